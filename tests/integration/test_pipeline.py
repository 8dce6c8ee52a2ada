"""Cloud services and edge services in-process, against a real hub and leaf."""

from __future__ import annotations

from edgebus.bus import Bus
from edgebus.metaclient import MetaClient
from edgebus.objects import CONFIGMAPS, NODES, PODS
from edgebus.objectstore import ObjectStore
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
        return {i["key"] for i in (await mc.list())["items"]}

    await eventually(lambda: _has(keys, {"/core/v1/pods/default/web", "/core/v1/configmaps/default/cfg"}), msg="objects on edge")
    assert "/core/v1/configmaps/default/unused" not in await keys()
    # the configmap is no longer referenced once the pod is gone -> both deleted on the edge
    await store.delete(PODS, "default", "web")
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
