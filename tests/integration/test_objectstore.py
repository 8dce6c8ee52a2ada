from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from edgebus.errors import AlreadyExists, Conflict, Invalid, NotFound
from edgebus.objects import CONFIGMAPS, NAMESPACES, PODS
from edgebus.objectstore import ADDED, DELETED, MODIFIED, ObjectStore


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
    await asyncio.sleep(0.3)
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
