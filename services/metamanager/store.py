"""metamanager's LMDB tables.

* ``objects``  - ``/<group>/<version>/<plural>/<ns>/<name>`` -> the object (msgpack)
* ``meta``     - same key -> ``{sync, rv, updates, deleted, revision[, kept]}``: the last
  applied sync version (tombstones are kept so a late, older message is still recognised),
  the cloud's resourceVersion of the stored version, how many downstream updates were
  applied to this key, and the local revision of the change; ``kept: true`` marks the
  metaserver's copy of its own accepted write (or delete), which a downstream message
  replaces only when it is at least as new (see :func:`logic.kept_wins`)
* ``state``    - ``revision`` (local, monotonic, one per applied change), counters
* ``status``   - pod key -> ``{time, status}``: the latest status this node reported for
  its own pods (read from its outbox), so local readers see live status while offline
* ``changelog``- ``<revision, zero-padded>`` -> ``{key, sync, type}`` for the last
  ``CHANGELOG_KEEP`` changes: lets a local watcher resume from a revision, and shows
  exactly what was applied (each ``(key, sync)`` at most once)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebus.objects import Resource
from edgebus.store import Store, Txn
from services.metamanager.logic import Kept, kept_wins, version

CHANGELOG_KEEP = 10_000


def _rev_key(rev: int) -> str:
    return f"{rev:020d}"


@dataclass(slots=True)
class Change:
    type: str  # ADDED | MODIFIED | DELETED
    key: str
    resource: str
    namespace: str | None
    name: str
    revision: int
    object: dict[str, Any] | None


@dataclass(slots=True)
class Item:
    """One downstream message decided for application."""

    resource: Resource
    namespace: str | None
    name: str
    delete: bool
    seq: int
    rv: str
    obj: dict[str, Any] | None


class MetaStore:
    def __init__(self, path: str | Path, *, map_size: int = 64 << 20, max_map_size: int = 16 << 30) -> None:
        self.store = Store(path, map_size=map_size, max_map_size=max_map_size)
        self.objects = self.store.table("objects")
        self.meta = self.store.table("meta")
        self.state = self.store.table("state")
        self.changelog = self.store.table("changelog")
        self.status = self.store.table("status")

    def close(self) -> None:
        self.store.close()

    def meta_of(self, key: str, txn: Txn | None = None) -> dict[str, Any] | None:
        return self.meta.get(key, txn)

    async def apply(self, items: list[Item], *, received: int) -> list[Change]:
        """Commit ``items`` in one transaction (on the writer thread: the loop never waits for
        the fsync); returns the changes, in order."""

        def run(t: Txn) -> list[Change]:
            changes: list[Change] = []
            rev = int(self.state.get("revision", t) or 0)
            for it in items:
                key = it.resource.lmdb_key(it.namespace, it.name)
                cur = self.meta.get(key, t)
                if cur is not None and it.seq <= int(cur.get("sync", 0)):
                    continue  # a duplicate inside one batch
                if kept_wins(cur, delete=it.delete, rv=it.rv, seq=it.seq):
                    assert cur is not None
                    self.meta.put(t, key, {**cur, "sync": it.seq})  # older than the kept copy: only seen
                    continue
                existed = self.objects.get(key, t) is not None
                rev += 1
                if it.delete:
                    if not existed:
                        typ = ""
                    else:
                        typ = "DELETED"
                    self.objects.delete(t, key)
                    self.status.delete(t, key)
                    obj = None
                else:
                    typ = "MODIFIED" if existed else "ADDED"
                    obj = it.obj
                    self.objects.put(t, key, obj)
                updates = int(cur.get("updates", 0)) + 1 if cur else 1
                self.meta.put(t, key, {"sync": it.seq, "rv": it.rv, "updates": updates, "deleted": it.delete, "revision": rev})
                self.changelog.put(t, _rev_key(rev), {"key": key, "sync": it.seq, "type": typ or "DELETED"})
                if rev > CHANGELOG_KEEP:
                    self.changelog.delete(t, _rev_key(rev - CHANGELOG_KEEP))
                if typ:
                    changes.append(Change(typ, key, it.resource.plural, it.namespace, it.name, rev, obj))
            self.state.put(t, "revision", rev)
            self.state.put(t, "received", int(self.state.get("received", t) or 0) + received)
            self.state.put(t, "applied", int(self.state.get("applied", t) or 0) + len(changes))
            return changes

        return await self.store.write_async(run)

    async def keep(self, k: Kept) -> Change | None:
        """Keep the metaserver's copy of a write the cloud accepted (``meta`` marks it
        ``kept``), unless the store already holds that version or a newer one; a deletion
        removes the object and leaves a kept tombstone. The change, if any."""

        def run(t: Txn) -> Change | None:
            key = k.resource.lmdb_key(k.namespace, k.name)
            cur = self.meta.get(key, t)
            existed = self.objects.get(key, t) is not None
            have = version((cur or {}).get("rv"))
            if k.obj is not None and cur is not None and have >= k.rv:
                return None  # what came down (or was kept) is this version or newer
            if k.obj is None and not existed and cur is None:
                return None  # nothing of it here
            rev = int(self.state.get("revision", t) or 0) + 1
            base = {"sync": int((cur or {}).get("sync", 0)), "updates": int((cur or {}).get("updates", 0)), "revision": rev, "kept": True}
            if k.obj is None:
                self.objects.delete(t, key)
                self.status.delete(t, key)
                self.meta.put(t, key, {**base, "rv": str(max(have, k.rv)), "deleted": True})
                typ = "DELETED"
            else:
                self.objects.put(t, key, k.obj)
                self.meta.put(t, key, {**base, "rv": str(k.rv), "deleted": False})
                typ = "MODIFIED" if existed else "ADDED"
            self.changelog.put(t, _rev_key(rev), {"key": key, "sync": 0, "type": typ if existed or k.obj is not None else "DELETED"})
            if rev > CHANGELOG_KEEP:
                self.changelog.delete(t, _rev_key(rev - CHANGELOG_KEEP))
            self.state.put(t, "revision", rev)
            if typ == "DELETED" and not existed:
                return None
            return Change(typ, key, k.resource.plural, k.namespace, k.name, rev, k.obj)

        return await self.store.write_async(run)

    async def apply_status(self, reports: list[tuple[str, str, str | None, str, int, dict[str, Any], int]], *, epoch: str = "") -> list[Change]:
        """Record the newest of each ``(key, resource, namespace, name, time, status, seq)``
        - newest by its outbox sequence ``seq`` in outbox ``epoch`` (a record from another
        outbox, or one kept without a sequence, is older); a change for each object that
        exists locally and got a newer status."""

        def run(t: Txn) -> list[Change]:
            changes: list[Change] = []
            rev = int(self.state.get("revision", t) or 0)
            for key, resource, ns, name, when, status, seq in reports:
                cur = self.status.get(key, t)
                if cur is not None and cur.get("epoch") == epoch and seq <= int(cur.get("seq", 0)):
                    continue
                obj = self.objects.get(key, t)
                rec = {"time": when, "seq": seq, "epoch": epoch, "status": status}
                if obj is None:
                    self.status.put(t, key, {**rec, "revision": 0})
                    continue
                rev += 1
                self.status.put(t, key, {**rec, "revision": rev})
                self.changelog.put(t, _rev_key(rev), {"key": key, "sync": 0, "type": "STATUS"})
                if rev > CHANGELOG_KEEP:
                    self.changelog.delete(t, _rev_key(rev - CHANGELOG_KEEP))
                changes.append(Change("MODIFIED", key, resource, ns, name, rev, {**obj, "status": status}))
            self.state.put(t, "revision", rev)
            return changes

        return await self.store.write_async(run)

    def with_status(self, key: str, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as this node sees it: with the status it reported last, if any."""
        st = self.status.get(key)
        return {**obj, "status": st["status"]} if st else obj

    async def count_skipped(self, n: int) -> None:
        if n:
            await self.store.write_async(lambda t: self.state.put(t, "skipped", int(self.state.get("skipped", t) or 0) + n))

    def changes(self, since: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Changes after local revision ``since`` (oldest first), from the change log."""
        out = []
        for k, v in self.changelog.items_from(_rev_key(since + 1), limit):
            out.append({"revision": int(k), **v})
            if len(out) >= limit:
                break
        return out

    def revision(self) -> int:
        return int(self.state.get("revision") or 0)

    def stats(self) -> dict[str, Any]:
        return {
            "revision": self.revision(),
            "received": int(self.state.get("received") or 0),
            "applied": int(self.state.get("applied") or 0),
            "skipped": int(self.state.get("skipped") or 0),
            "objects": self.objects.count(),
            "lmdb_bytes": self.store.used_bytes(),
            "lmdb_map_bytes": self.store.map_size(),
        }
