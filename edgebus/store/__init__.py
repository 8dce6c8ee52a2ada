"""The store layer: the only code in edgebus that imports lmdb."""

from edgebus.store.lmdb_store import Store, StoreError, StoreFull, StoreLocked, Table, Txn

__all__ = ["Store", "StoreError", "StoreFull", "StoreLocked", "Table", "Txn"]
