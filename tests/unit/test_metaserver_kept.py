"""Read your writes on the node: what the metaserver keeps of an accepted write (pure
decision), and how a kept copy and the downstream sync meet in the real LMDB store (newer
wins, by the cloud's resourceVersion)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebus.objects import CONFIGMAPS, PODS
from services.metamanager.logic import Kept, accepted_write, kept_wins
from services.metamanager.store import Item, MetaStore


def cm(name: str, rv: int, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)}, "data": data}


def test_what_an_accepted_write_keeps() -> None:
    k = accepted_write(CONFIGMAPS, "POST", "default", None, 201, cm("x", 7), dry_run=False)
    assert k == Kept(CONFIGMAPS, "default", "x", cm("x", 7), 7)
    assert accepted_write(CONFIGMAPS, "PUT", "default", "x", 200, cm("x", 8), dry_run=False) is not None
    # nothing kept: refusals, dry runs, other namespaces or names, other kinds, no resourceVersion
    assert accepted_write(CONFIGMAPS, "POST", "default", None, 403, cm("x", 7), dry_run=False) is None
    assert accepted_write(CONFIGMAPS, "POST", "default", None, 201, cm("x", 7), dry_run=True) is None
    assert accepted_write(CONFIGMAPS, "POST", "other", None, 201, cm("x", 7), dry_run=False) is None
    assert accepted_write(CONFIGMAPS, "PUT", "default", "y", 200, cm("x", 7), dry_run=False) is None
    assert accepted_write(CONFIGMAPS, "POST", "default", None, 201, {"kind": "Status", "apiVersion": "v1", "status": "Success"}, dry_run=False) is None
    assert accepted_write(CONFIGMAPS, "POST", "default", None, 201, {**cm("x", 7), "kind": "Secret"}, dry_run=False) is None
    assert accepted_write(CONFIGMAPS, "POST", "default", None, 201, cm("x", 0), dry_run=False) is None
    assert accepted_write(CONFIGMAPS, "POST", "default", None, 201, ["not", "an", "object"], dry_run=False) is None
    assert accepted_write(CONFIGMAPS, "POST", "default", None, 201, {**cm("x", 7), "metadata": "bad"}, dry_run=False) is None
    # deletes: the object goes, unless it is still terminating; a collection delete keeps nothing
    gone = accepted_write(CONFIGMAPS, "DELETE", "default", "x", 200, cm("x", 9), dry_run=False)
    assert gone == Kept(CONFIGMAPS, "default", "x", None, 9)
    assert accepted_write(CONFIGMAPS, "DELETE", "default", "x", 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}, dry_run=False) == Kept(CONFIGMAPS, "default", "x", None, 0)
    deleted = cm("x", 9)
    deleted["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"  # (the cloud's last state)
    assert accepted_write(CONFIGMAPS, "DELETE", "default", "x", 200, deleted, dry_run=False) == Kept(CONFIGMAPS, "default", "x", None, 9)
    terminating = cm("x", 10)
    terminating["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z", finalizers=["orphan"])
    assert accepted_write(CONFIGMAPS, "DELETE", "default", "x", 200, terminating, dry_run=False) == Kept(CONFIGMAPS, "default", "x", terminating, 10)
    assert accepted_write(CONFIGMAPS, "DELETE", "default", None, 200, {"kind": "ConfigMapList", "items": []}, dry_run=False) is None
    assert accepted_write(CONFIGMAPS, "DELETE", "default", "x", 404, {"kind": "Status", "status": "Failure"}, dry_run=False) is None


def test_kept_wins_only_when_newer() -> None:
    kept = {"kept": True, "rv": "10", "deleted": False}
    assert kept_wins(kept, delete=False, rv="9", seq=9)
    assert not kept_wins(kept, delete=False, rv="10", seq=10)  # the same version came down
    assert not kept_wins(kept, delete=False, rv="11", seq=11)
    assert kept_wins(kept, delete=True, rv="", seq=8)  # a stale delete (before a re-create)
    assert not kept_wins(kept, delete=True, rv="", seq=12)
    tomb = {"kept": True, "rv": "10", "deleted": True}
    assert kept_wins(tomb, delete=False, rv="10", seq=10)  # the version that was deleted
    assert not kept_wins(tomb, delete=False, rv="11", seq=11)  # re-created in the cloud
    assert not kept_wins({"rv": "10", "sync": 10}, delete=False, rv="3", seq=3)  # synced: sync decides


def down(obj: dict[str, Any] | None, name: str, seq: int, rv: int) -> Item:
    return Item(CONFIGMAPS, "default", name, obj is None, seq, str(rv) if rv else "", obj)


async def test_kept_copies_meet_the_downstream_sync(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "mm")
    key = CONFIGMAPS.lmdb_key("default", "x")
    try:
        ch = await store.keep(Kept(CONFIGMAPS, "default", "x", cm("x", 10, v="mine"), 10))
        assert ch is not None and ch.type == "ADDED" and ch.revision == store.revision()
        assert store.objects.get(key)["data"] == {"v": "mine"} and store.meta_of(key)["kept"] is True
        assert store.changes(0)[-1] == {"revision": ch.revision, "key": key, "sync": 0, "type": "ADDED"}
        # an older version coming down does not replace the kept copy (but is recorded as seen)
        assert await store.apply([down(cm("x", 9, v="old"), "x", 9, 9)], received=1) == []
        assert store.objects.get(key)["data"] == {"v": "mine"} and store.meta_of(key)["sync"] == 9
        # a newer one does, and the object is then a synced one
        [ch] = await store.apply([down(cm("x", 12, v="cloud"), "x", 12, 12)], received=1)
        assert ch.type == "MODIFIED" and store.objects.get(key)["data"] == {"v": "cloud"} and "kept" not in store.meta_of(key)
        # keeping a copy older than what came down changes nothing
        assert await store.keep(Kept(CONFIGMAPS, "default", "x", cm("x", 11, v="late"), 11)) is None
        assert store.objects.get(key)["data"] == {"v": "cloud"}
        # an accepted delete removes it; the version it deleted, coming down late, stays deleted
        ch = await store.keep(Kept(CONFIGMAPS, "default", "x", None, 0))
        assert ch is not None and ch.type == "DELETED" and store.objects.get(key) is None
        assert store.meta_of(key)["deleted"] is True and store.meta_of(key)["rv"] == "12"
        assert await store.apply([down(cm("x", 12, v="cloud"), "x", 13, 12)], received=1) == []
        assert store.objects.get(key) is None
        # re-created in the cloud later: it comes back
        [ch] = await store.apply([down(cm("x", 20, v="again"), "x", 20, 20)], received=1)
        assert ch.type == "ADDED" and store.objects.get(key)["data"] == {"v": "again"}
        # deleting what the node never had leaves nothing behind
        assert await store.keep(Kept(CONFIGMAPS, "default", "never", None, 0)) is None
        assert store.meta_of(CONFIGMAPS.lmdb_key("default", "never")) is None
    finally:
        store.close()


async def test_a_kept_pod_keeps_the_node_status_overlay(tmp_path: Path) -> None:
    store = MetaStore(tmp_path / "mm")
    key = PODS.lmdb_key("default", "p")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "resourceVersion": "5"}, "spec": {}, "status": {"phase": "Pending"}}
    try:
        await store.apply_status([(key, "pods", "default", "p", 1, {"phase": "Running"}, 1)], epoch="e")
        await store.keep(Kept(PODS, "default", "p", pod, 5))
        assert store.with_status(key, store.objects.get(key))["status"] == {"phase": "Running"}
    finally:
        store.close()
