"""LMDB, the edge's local metadata store: typed tables, map growth, one writer process.

* One environment per owning service, opened by exactly one writer process (an exclusive
  ``flock`` on ``writer.lock``; a second writer gets :class:`StoreLocked`). Readers in
  other processes may open it ``readonly``.
* Values are msgpack; keys are strings.
* Writes run as a function over a transaction: when the map is full the transaction is
  aborted, the map doubled, and the function run again, so callers never see
  ``MapFullError``.
* An environment is never used across ``fork()``: using it from a child raises.
* :meth:`Store.write_async` runs the write (its commit, and the fsync of a ``sync=True``
  environment) on the environment's own writer thread, so an event loop never waits for the
  disk; reads stay where they are called (they only copy from the map). A map growth waits
  until no transaction of the process is open (LMDB requires it).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import lmdb
import msgpack

from edgebus.errors import EdgebusError, RetryLater

log = logging.getLogger("edgebus.store")

T = TypeVar("T")
R = TypeVar("R")


class StoreError(EdgebusError):
    pass


class StoreLocked(StoreError):
    """Another process is the writer of this environment."""


class StoreFull(StoreError, RetryLater):
    """The map cannot grow any further (``max_map_size``) or the disk is full.

    Transient by nature (space can be freed): messages are redelivered, never dropped."""

    def __init__(self, message: str) -> None:
        RetryLater.__init__(self, message, delay=2.0)


def _pack(v: Any) -> bytes:
    return msgpack.packb(v, use_bin_type=True)


def _unpack(b: bytes | memoryview) -> Any:
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


class _MapLock:
    """Transactions share it; a map resize takes it alone (no transaction of this process
    may be open while LMDB remaps, whichever thread it is in)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._resizing = False

    @contextmanager
    def txn(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if not self._active:
                    self._cond.notify_all()

    @contextmanager
    def resize(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class Table(Generic[T]):
    """A named LMDB database with string keys and msgpack values.

    Reads return snapshots (lists, not lazy iterators): a read transaction is never held
    across an ``await`` or a map growth.
    """

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.db = store.env.open_db(name.encode(), create=not store.readonly)

    def _read(self, fn: Callable[[lmdb.Transaction], R]) -> R:
        self.store._check_pid()
        for attempt in range(3):
            try:
                with self.store._map.txn(), self.store.env.begin(db=self.db) as t:
                    return fn(t)
            except lmdb.MapResizedError:
                # another process grew the map: adopt its size and read again
                with self.store._map.resize():
                    self.store.env.set_mapsize(0)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, key: str, txn: Txn | None = None) -> T | None:
        if txn is not None:
            raw = txn.raw.get(key.encode(), db=self.db)
        else:
            raw = self._read(lambda t: t.get(key.encode()))
        return None if raw is None else _unpack(raw)

    def put(self, txn: Txn, key: str, value: T) -> None:
        txn.raw.put(key.encode(), _pack(value), db=self.db)

    def delete(self, txn: Txn, key: str) -> bool:
        return bool(txn.raw.delete(key.encode(), db=self.db))

    def items(self, prefix: str = "", txn: Txn | None = None) -> list[tuple[str, T]]:
        """Every (key, value) whose key starts with ``prefix``, in key order (a snapshot)."""
        if txn is not None:
            return self._scan(txn.raw, prefix)
        return self._read(lambda t: self._scan(t, prefix))

    def items_from(self, start: str, limit: int = 1000) -> list[tuple[str, T]]:
        """Up to ``limit`` (key, value) pairs with key >= ``start``, in key order."""

        def scan(t: lmdb.Transaction) -> list[tuple[str, T]]:
            out: list[tuple[str, T]] = []
            cur = t.cursor(db=self.db)
            if not cur.set_range(start.encode()):
                return out
            for k, v in cur:
                out.append((bytes(k).decode(), _unpack(v)))
                if len(out) >= limit:
                    break
            return out

        return self._read(scan)

    def _scan(self, t: lmdb.Transaction, prefix: str) -> list[tuple[str, T]]:
        p = prefix.encode()
        out: list[tuple[str, T]] = []
        cur = t.cursor(db=self.db)
        if not cur.set_range(p):
            return out
        for raw_key, v in cur:
            k = bytes(raw_key)
            if not k.startswith(p):
                break
            out.append((k.decode(), _unpack(v)))
        return out

    def count(self) -> int:
        return int(self._read(lambda t: t.stat(self.db)["entries"]))


class Txn:
    """A write transaction handed to :meth:`Store.write` functions."""

    def __init__(self, raw: lmdb.Transaction) -> None:
        self.raw = raw


class Store:
    def __init__(
        self,
        path: str | Path,
        *,
        map_size: int = 64 << 20,
        max_map_size: int = 64 << 30,
        max_dbs: int = 32,
        sync: bool = True,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.max_map_size = max_map_size
        self._pid = os.getpid()
        self._lock_fd: int | None = None
        self.path.mkdir(parents=True, exist_ok=True)
        if not readonly:
            self._lock_fd = os.open(self.path / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                self._lock_fd = None
                raise StoreLocked(f"{self.path} is already opened for writing by another process") from None
        self.env = lmdb.open(
            str(self.path),
            map_size=map_size,
            max_dbs=max_dbs,
            subdir=True,
            sync=sync,
            readonly=readonly,
            lock=True,
        )
        # LMDB maps only the committed size on reopen; start from whichever is larger.
        info = self.env.info()
        if info["map_size"] < map_size and not readonly:
            self.env.set_mapsize(map_size)
        self._tables: dict[str, Table[Any]] = {}
        self._map = _MapLock()
        self._writer: ThreadPoolExecutor | None = None

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            raise StoreError("an LMDB environment must not be used across fork()")

    def table(self, name: str) -> Table[Any]:
        self._check_pid()
        t = self._tables.get(name)
        if t is None:
            t = Table(self, name)
            self._tables[name] = t
        return t

    def write(self, fn: Callable[[Txn], R]) -> R:
        """Run ``fn`` in one write transaction and commit; grow the map when full."""
        self._check_pid()
        if self.readonly:
            raise StoreError("store is read-only")
        while True:
            full = False
            with self._map.txn():
                txn = self.env.begin(write=True)
                try:
                    result = fn(Txn(txn))
                    txn.commit()
                    return result
                except lmdb.MapFullError:
                    txn.abort()
                    full = True
                except lmdb.DiskError as exc:
                    txn.abort()
                    raise StoreFull(f"disk error writing {self.path}: {exc}") from exc
                except lmdb.Error as exc:
                    txn.abort()
                    if "commit" in str(exc) or "space" in str(exc).lower():
                        # a commit that could not write its pages (a full disk answers EIO or
                        # ENOSPC): nothing was stored, the caller retries - never drops
                        raise StoreFull(f"could not commit to {self.path} ({self.free_bytes()} bytes free): {exc}") from exc
                    raise
                except BaseException:
                    txn.abort()
                    raise
            if full:
                with self._map.resize():
                    self._grow()

    async def write_async(self, fn: Callable[[Txn], R]) -> R:
        """:meth:`write` on the environment's writer thread (one at a time, in order): the
        caller's event loop keeps running while the transaction commits and syncs."""
        self._check_pid()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lmdb-writer:{self.path.name}")
        return await asyncio.get_running_loop().run_in_executor(self._writer, self.write, fn)

    def _grow(self) -> None:
        cur = self.env.info()["map_size"]
        new = cur * 2
        if new > self.max_map_size:
            raise StoreFull(f"LMDB map at {self.path} is full ({cur} bytes) and may not grow past {self.max_map_size}")
        try:
            self.env.set_mapsize(new)
        except lmdb.Error as exc:
            raise StoreFull(f"cannot grow LMDB map at {self.path} to {new} bytes: {exc}") from exc
        log.info("grew LMDB map at %s to %d MiB", self.path, new >> 20)

    def free_bytes(self) -> int:
        """Bytes free on the environment's filesystem (for the unprivileged)."""
        try:
            st = os.statvfs(self.path)
        except OSError:
            return -1
        return int(st.f_bavail * st.f_frsize)

    def map_size(self) -> int:
        return int(self.env.info()["map_size"])

    def used_bytes(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        try:
            self.env.close()
        finally:
            if self._lock_fd is not None:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    os.close(self._lock_fd)
                except OSError:
                    pass
                self._lock_fd = None
