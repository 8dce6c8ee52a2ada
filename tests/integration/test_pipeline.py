"""Cloud services and edge services in-process, against a real hub and leaf."""

from __future__ import annotations

from edgebus.metaclient import MetaClient
from edgebus.objects import CONFIGMAPS, NODES, PODS
from edgebus.objectstore import ObjectStore
from edgebus.testing.servers import bus_for
from edgebus.testing.waiting import eventually


def pod(name: str, node: str, cm: str | None = None) -> dict:
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if cm:
        spec["volumes"] = [{"name": "cfg", "configMap": {"name": cm}}]
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


async def test_desired_state_reaches_edge_and_node_is_ready(mesh) -> None:
    store, bus, _ = mesh
    node = await eventually(lambda: _ready(store), timeout=15, msg="edge-1 Ready")
    assert node["metadata"]["labels"]["node-role.kubernetes.io/edge"] == ""
    await store.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}})
    await store.create(CONFIGMAPS, {"metadata": {"name": "unused", "namespace": "default"}, "data": {"a": "1"}})
    await store.create(PODS, pod("web", "edge-1", "cfg"))
    mc = MetaClient(bus, "edge-1")

    async def keys() -> set[str]:
        return {i["key"] for i in (await mc.list())["items"]} - {"/core/v1/nodes/_/edge-1"}

    # the node has its own Node object
    await eventually(lambda: _has(lambda: _all_keys(mc), {"/core/v1/nodes/_/edge-1"}), msg="the node's own Node on the edge")
    await eventually(lambda: _has(keys, {"/core/v1/pods/default/web", "/core/v1/configmaps/default/cfg"}), msg="objects on edge")
    assert "/core/v1/configmaps/default/unused" not in await keys()
    # the configmap is no longer referenced once the pod is gone -> both deleted on the edge
    await store.delete(PODS, "default", "web", grace_period_seconds=0)  # no edged here to confirm
    await eventually(lambda: _empty(keys), msg="objects removed from edge")


async def _ready(store: ObjectStore):
    try:
        n = await store.get(NODES, None, "edge-1")
    except Exception:
        return None
    for c in n.get("status", {}).get("conditions", []):
        if c["type"] == "Ready" and c["status"] == "True":
            return n
    return None


async def _has(keys, want: set[str]) -> bool:
    return want <= await keys()


async def _empty(keys) -> bool:
    return not await keys()


async def test_node_keeps_its_own_pod_status(mesh) -> None:
    """metamanager overlays the status the node itself reported (from its outbox), so local
    readers see live status - also while offline - though status never travels down."""
    import time

    from edgebus import names
    from edgebus.envelope import Envelope

    store, _, svcs = mesh
    edge = bus_for(svcs[2].settings, "test-edge")
    await edge.connect(retry_for=5)
    try:
        mc = MetaClient(edge, "edge-1")
        await store.create(PODS, pod("web", "edge-1"))
        await eventually(lambda: _has(lambda: _keys(mc), {"/core/v1/pods/default/web"}), msg="pod on the edge")
        rev0 = (await mc.stats())["revision"]
        ref = names.ObjectRef("pods", "default", "web")
        # the second report comes later in the outbox though the edge's clock went back: it is
        # the newer one (reports are ordered by the outbox, not by the edge's clock)
        for phase, t in (("Running", time.time_ns()), ("Pending", time.time_ns() - 10**9)):
            env = Envelope.new(source="edged", operation="update", resource="pods", content={"time": t, "status": {"phase": phase}})
            await edge.js_publish(names.outbox_subject("edge-1", names.UP_STATUS, ref), env, stream=names.STREAM_EDGE_UP)
        got = await eventually(lambda: _phase(mc, "Pending"), msg="local status overlay")
        assert got["object"]["spec"]["nodeName"] == "edge-1"
        await eventually(lambda: _cloud_phase(store, "Pending"), msg="the same report reached the cloud")
        changes = (await mc.changes(rev0))["changes"]
        # (the node's own Node may change meanwhile: its status settles after start)
        assert [c["type"] for c in changes if c["key"] == "/core/v1/pods/default/web"] in (["STATUS"], ["STATUS", "STATUS"])  # one batch, or two
    finally:
        await edge.close()


async def _all_keys(mc: MetaClient) -> set[str]:
    return {i["key"] for i in (await mc.list())["items"]}


async def _keys(mc: MetaClient) -> set[str]:
    return {i["key"] for i in (await mc.list())["items"]}


async def _phase(mc: MetaClient, phase: str):
    got = await mc.get("pods", "default", "web")
    return got if (got["object"].get("status") or {}).get("phase") == phase else None


async def _cloud_phase(store: ObjectStore, phase: str) -> bool:
    return ((await store.get(PODS, "default", "web")).get("status") or {}).get("phase") == phase


async def test_mirror_follows_the_local_store_by_events(mesh) -> None:
    """A Mirror lists once, then follows metamanager's commit events: adds, a burst of
    updates and deletes arrive without re-reading the store; garbage on the event subject
    is skipped; relist() re-reads and changes nothing."""
    import asyncio

    from edgebus import names
    from edgebus.metaclient import Mirror

    store, _, svcs = mesh
    edge = bus_for(svcs[2].settings, "test-edge")
    await edge.connect(retry_for=5)
    mc = MetaClient(edge, "edge-1")
    lists: list[str] = []
    real_list = mc.list

    async def counting_list(resource=None, *a, **kw):  # type: ignore[no-untyped-def]
        lists.append(resource)
        return await real_list(resource, *a, **kw)

    mc.list = counting_list  # type: ignore[method-assign]
    mirror = Mirror(mc, ("pods", "configmaps"), resync=300)
    passes: list[int] = []
    task = asyncio.create_task(mirror.follow(lambda m: passes.append(len(m.objects["configmaps"]))))
    try:
        await eventually(lambda: mirror.loaded, msg="initial listing")
        await store.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"v": "0"}})
        await store.create(PODS, pod("web", "edge-1", "cfg"))
        cm_key = "/core/v1/configmaps/default/cfg"
        await eventually(lambda: cm_key in mirror.objects["configmaps"] and "/core/v1/pods/default/web" in mirror.objects["pods"], msg="added")
        await edge.publish(names.meta_events_subject("edge-1", "configmaps"), b"\xc1 not msgpack")
        for i in range(1, 31):
            cur = await store.get(CONFIGMAPS, "default", "cfg")
            await store.update(CONFIGMAPS, {**cur, "data": {"v": str(i)}})
        await eventually(lambda: mirror.objects["configmaps"].get(cm_key, {}).get("data") == {"v": "30"}, msg="latest update mirrored")
        listed = (await real_list("configmaps"))["items"]
        assert [i["object"] for i in listed] == list(mirror.objects["configmaps"].values())
        assert sorted(lists) == ["configmaps", "pods"], "changes were followed without re-listing"
        await store.delete(PODS, "default", "web", grace_period_seconds=0)
        await eventually(lambda: not mirror.objects["pods"] and not mirror.objects["configmaps"], msg="deletes mirrored")
        before = len(lists)
        mirror.relist()
        await eventually(lambda: len(lists) == before + 2, msg="relisted")
        assert mirror.objects == {"pods": {}, "configmaps": {}}
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await edge.close()
