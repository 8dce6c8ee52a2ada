from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from edgebus.errors import AlreadyExists, Conflict, Invalid, NotFound
from edgebus.objects import CONFIGMAPS, NAMESPACES, PODS
from edgebus.objectstore import ADDED, DELETED, MODIFIED, ObjectStore
from edgebus.testing.waiting import eventually


@pytest.fixture
async def store(bus):
    s = ObjectStore(bus)
    await s.ensure()
    await s.ensure_system_namespaces()
    return s


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data}


async def test_create_get_update_conflict_delete(store: ObjectStore) -> None:
    created = await store.create(CONFIGMAPS, cm("a", k="1"))
    rv1 = created["metadata"]["resourceVersion"]
    assert created["metadata"]["uid"] and created["metadata"]["creationTimestamp"]
    got = await store.get(CONFIGMAPS, "default", "a")
    assert got["data"] == {"k": "1"} and got["metadata"]["resourceVersion"] == rv1

    with pytest.raises(AlreadyExists):
        await store.create(CONFIGMAPS, cm("a"))

    upd = dict(got, data={"k": "2"})
    new = await store.update(CONFIGMAPS, upd)
    assert int(new["metadata"]["resourceVersion"]) > int(rv1)
    assert new["metadata"]["uid"] == created["metadata"]["uid"]

    stale = dict(got, data={"k": "3"})  # still carries rv1
    with pytest.raises(Conflict) as ei:
        await store.update(CONFIGMAPS, stale)
    assert ei.value.status()["code"] == 409

    deleted = await store.delete(CONFIGMAPS, "default", "a")
    assert deleted["data"] == {"k": "2"}
    with pytest.raises(NotFound):
        await store.get(CONFIGMAPS, "default", "a")
    # re-create after delete works
    again = await store.create(CONFIGMAPS, cm("a", k="x"))
    assert again["metadata"]["uid"] != created["metadata"]["uid"]


async def test_invalid_objects_rejected(store: ObjectStore) -> None:
    with pytest.raises(Invalid) as ei:
        await store.create(CONFIGMAPS, cm("Bad_Name"))
    assert 'ConfigMap "Bad_Name" is invalid: metadata.name' in ei.value.message
    with pytest.raises(Invalid) as ei:
        await store.create(PODS, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})
    assert "spec.containers[0].image: Required value" in ei.value.message
    with pytest.raises(NotFound):
        await store.create(CONFIGMAPS, {"metadata": {"name": "x", "namespace": "nope"}})


async def test_list_with_selectors(store: ObjectStore) -> None:
    for i in range(5):
        await store.create(
            PODS,
            {
                "metadata": {"name": f"p{i}", "namespace": "default", "labels": {"app": "a" if i % 2 else "b"}},
                "spec": {"nodeName": f"n{i % 2}", "containers": [{"name": "c", "image": "busybox"}]},
            },
        )
    items, rv = await store.list(PODS, "default")
    assert [o["metadata"]["name"] for o in items] == ["p0", "p1", "p2", "p3", "p4"]
    assert rv >= max(int(o["metadata"]["resourceVersion"]) for o in items)
    items, _ = await store.list(PODS, None, label_selector="app=a")
    assert [o["metadata"]["name"] for o in items] == ["p1", "p3"]
    items, _ = await store.list(PODS, None, field_selector="spec.nodeName=n0")
    assert [o["metadata"]["name"] for o in items] == ["p0", "p2", "p4"]
    items, _ = await store.list(PODS, None, label_selector="app in (a,b),app!=b")
    assert [o["metadata"]["name"] for o in items] == ["p1", "p3"]
    ns, _ = await store.list(NAMESPACES)
    assert {"default", "kube-system"} <= {o["metadata"]["name"] for o in ns}


async def test_watch_from_revision_and_initial(store: ObjectStore) -> None:
    a = await store.create(CONFIGMAPS, cm("w1", v="1"))
    rv = int(a["metadata"]["resourceVersion"])
    await store.update(CONFIGMAPS, dict(a, data={"v": "2"}))
    await store.delete(CONFIGMAPS, "default", "w1")
    b = await store.create(CONFIGMAPS, cm("w0", v="1"))
    await store.update(CONFIGMAPS, dict(b, data={"v": "2"}))
    events = []
    async with aclosing(store.watch([CONFIGMAPS], "default", from_revision=rv)) as it:
        async for ev in it:
            events.append((ev.type, ev.object["metadata"]["name"], ev.object.get("data")))
            if len(events) == 2:
                break
    # KV keeps one revision per key: the versions of w1 and w0 in between are coalesced
    # into each object's latest state (the delete carries the deleted object).
    assert events == [(DELETED, "w1", {"v": "2"}), (MODIFIED, "w0", {"v": "2"})]

    await store.create(CONFIGMAPS, cm("w2"))
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async with aclosing(store.watch([CONFIGMAPS], "default")) as it:
            async for ev in it:
                seen.append((ev.type, ev.object["metadata"]["name"]))
                if len(seen) == 3:
                    return

    t = asyncio.create_task(consume())
    await eventually(lambda: len(seen) == 2, timeout=5, msg="the existing objects listed")
    await store.create(CONFIGMAPS, cm("w3"))
    await asyncio.wait_for(t, 5)
    # existing objects first (synthetic ADDED, w1 is deleted so absent), then the live create
    assert seen == [(ADDED, "w0"), (ADDED, "w2"), (ADDED, "w3")]


async def test_update_on_a_known_revision_skips_the_read_and_stays_exact(store: ObjectStore, bus) -> None:  # type: ignore[no-untyped-def]
    """An update naming the revision this store last read or wrote merges onto that entry
    without reading it again; a write by another replica in between still makes it a 409,
    and a delete a 404 - the compare-and-set decides, never the remembered entry."""
    reads: list[str] = []
    real_get = store.kv.get

    async def counting_get(key: str):  # type: ignore[no-untyped-def]
        reads.append(key)
        return await real_get(key)

    store.kv.get = counting_get  # type: ignore[method-assign]
    created = await store.create(CONFIGMAPS, cm("k", v="0"))
    reads.clear()  # the create checked its namespace
    cur = created
    for i in range(1, 4):
        cur = await store.update(CONFIGMAPS, dict(cur, data={"v": str(i)}))
    assert reads == [], "each update named the revision the create or the previous update wrote"
    assert cur["metadata"]["uid"] == created["metadata"]["uid"] and cur["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    assert (await ObjectStore(bus).get(CONFIGMAPS, "default", "k"))["data"] == {"v": "3"}

    other = ObjectStore(bus)  # another apiserver replica
    theirs = await other.update(CONFIGMAPS, dict(await other.get(CONFIGMAPS, "default", "k"), data={"v": "theirs"}))
    with pytest.raises(Conflict):
        await store.update(CONFIGMAPS, dict(cur, data={"v": "mine"}))
    assert (await other.get(CONFIGMAPS, "default", "k"))["data"] == {"v": "theirs"}
    mine = await store.update(CONFIGMAPS, dict(theirs, data={"v": "mine"}))
    await other.delete(CONFIGMAPS, "default", "k")
    with pytest.raises(NotFound):
        await store.update(CONFIGMAPS, dict(mine, data={"v": "again"}))


async def test_a_delete_during_the_initial_list_is_not_lost(store: ObjectStore) -> None:
    """A watcher still receiving the initial objects gets DELETED for one of them deleted
    meanwhile (before, the delete was taken for an old tombstone and dropped, and the
    watcher kept an object that no longer exists)."""
    from edgebus.objectstore import BOOKMARK

    for i in range(300):
        await store.create(CONFIGMAPS, cm(f"n{i:03d}"))
    state: dict[str, bool] = {}
    deleted = False
    async with aclosing(store.watch([CONFIGMAPS], "default", bookmarks=True)) as it:
        async for ev in it:
            if ev.type == BOOKMARK:
                if deleted:
                    break
                continue
            name = ev.object["metadata"]["name"]
            state[name] = ev.type != DELETED
            if not deleted:
                await store.delete(CONFIGMAPS, "default", "n000")  # while the initial objects come
                deleted = True
            if deleted and name == "n000" and ev.type == DELETED:
                break
    assert state.get("n000") is False


async def test_a_delete_racing_a_write_is_tried_again_unless_it_has_a_precondition(store: ObjectStore, bus) -> None:  # type: ignore[no-untyped-def]
    """kube-apiserver answers a DELETE without preconditions 409 only when a precondition
    fails; a write between the delete's read and its compare-and-delete is retried."""
    other = ObjectStore(bus)
    created = await store.create(CONFIGMAPS, cm("racy", k="1"))
    read = store.kv.get
    writes = 0

    async def read_then_someone_writes(key: str):  # type: ignore[no-untyped-def]
        nonlocal writes
        entry = await read(key)
        if writes < 2 and entry is not None:  # the next two reads are overtaken by a real write
            writes += 1
            cur = await other.get(CONFIGMAPS, "default", "racy")
            await other.update(CONFIGMAPS, {**cur, "data": {"k": str(writes + 1)}})
        return entry

    store.kv.get = read_then_someone_writes  # type: ignore[method-assign]
    try:
        gone = await store.delete(CONFIGMAPS, "default", "racy")
        assert writes == 2 and gone["data"] == {"k": "3"}, "deleted as it was after the racing writes"
        with pytest.raises(NotFound):
            await other.get(CONFIGMAPS, "default", "racy")
        # with a precondition the race is the caller's to see
        await store.create(CONFIGMAPS, cm("racy", k="1"))
        writes = 1
        uid = (await other.get(CONFIGMAPS, "default", "racy"))["metadata"]["uid"]
        with pytest.raises(Conflict):
            await store.delete(CONFIGMAPS, "default", "racy", uid=uid)
    finally:
        store.kv.get = read  # type: ignore[method-assign]
    assert created["metadata"]["uid"] != uid
