"""KubeEdge's node groups against a real nats-server: NodeGroup membership labels and
status, and an EdgeApplication rolled out to two groups with per-group overrides, its
status per group, updates and cascading delete."""

from __future__ import annotations

from typing import Any

from edgebus.errors import NotFound
from edgebus.objects import DEPLOYMENTS, EDGEAPPLICATIONS, NODEGROUPS, NODES
from edgebus.objectstore import ObjectStore
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import controllers, edit

BELONGING = "apps.kubeedge.io/belonging-to"


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


async def labels(store: ObjectStore) -> dict[str, str | None]:
    items, _ = await store.list(NODES)
    return {n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get(BELONGING) for n in items}


async def test_node_group_membership(hub: Hub) -> None:
    async with controllers(hub, "nodegroupcontroller") as store:
        for n, site in (("edge-1", "a"), ("edge-2", "a"), ("edge-3", "b")):
            await store.create(NODES, node(n, site=site))
        await store.create(NODEGROUPS, {"metadata": {"name": "site-a"}, "spec": {"matchLabels": {"site": "a"}}})
        await store.create(NODEGROUPS, {"metadata": {"name": "site-b"}, "spec": {"nodes": ["edge-3", "edge-1", "edge-9"]}})

        async def settled() -> bool:
            return await labels(store) == {"edge-1": "site-a", "edge-2": "site-a", "edge-3": "site-b"}

        await eventually(settled, timeout=10, msg="members labelled")

        async def status_b() -> list[dict[str, Any]] | None:
            st = (await store.get(NODEGROUPS, None, "site-b")).get("status") or {}
            return st.get("nodeStatuses") if len(st.get("nodeStatuses") or []) == 3 else None

        st = {s["nodeName"]: s for s in await eventually(status_b, timeout=10, msg="status")}
        assert st["edge-3"] == {"nodeName": "edge-3", "readyStatus": "Ready", "selectionStatus": "Succeeded"}
        assert st["edge-1"]["selectionStatus"] == "Failed" and "already belongs to node group site-a" in st["edge-1"]["selectionStatusReason"]
        assert st["edge-9"] == {"nodeName": "edge-9", "readyStatus": "Unknown", "selectionStatus": "Failed", "selectionStatusReason": "node does not exist"}
        # a node that stops matching leaves; a deleted group's nodes lose the label
        await edit(store, NODES, None, "edge-2", lambda n: n["metadata"]["labels"].update(site="c"))
        await eventually(lambda: _is(store, "edge-2", None), timeout=10, msg="edge-2 left")
        await store.delete(NODEGROUPS, None, "site-a")
        await eventually(lambda: _is(store, "edge-1", "site-b"), timeout=10, msg="edge-1 free, then taken by site-b")


async def _is(store: ObjectStore, n: str, want: str | None) -> bool:
    return (await labels(store))[n] == want


APP = {
    "apiVersion": "apps.kubeedge.io/v1alpha1",
    "kind": "EdgeApplication",
    "metadata": {"name": "counter"},
    "spec": {
        "workloadTemplate": {
            "manifests": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "counter", "labels": {"app": "counter"}},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": "counter"}},
                        "template": {
                            "metadata": {"labels": {"app": "counter"}},
                            "spec": {"containers": [{"name": "main", "image": "registry.example.com/edge/counter:v1", "command": ["counter"], "env": [{"name": "MODE", "value": "std"}]}]},
                        },
                    },
                }
            ]
        },
        "workloadScope": {
            "targetNodeGroups": [
                {"name": "site-a", "overriders": {"replicas": 3, "imageOverriders": [{"component": "Tag", "operator": "replace", "value": "v2"}]}},
                {
                    "name": "site-b",
                    "overriders": {
                        "imageOverriders": [{"component": "Registry", "operator": "replace", "value": "mirror.site-b.local"}],
                        "envOverriders": [{"containerName": "main", "operator": "replace", "value": [{"name": "MODE", "value": "low-power"}]}],
                        "argsOverriders": [{"containerName": "main", "operator": "add", "value": ["--slow"]}],
                        "resourcesOverriders": [{"containerName": "main", "value": {"limits": {"cpu": "250m"}}}],
                    },
                },
            ]
        },
    },
}


async def test_edge_application_per_group(hub: Hub) -> None:
    async with controllers(hub, "edgeapplicationcontroller", "deploymentcontroller", "garbagecollector") as store:
        await store.create(EDGEAPPLICATIONS, APP, namespace="default")

        async def both() -> dict[str, dict[str, Any]] | None:
            items, _ = await store.list(DEPLOYMENTS, "default", label_selector="apps.kubeedge.io/edgeapplication-name=counter")
            return {d["metadata"]["name"]: d for d in items} if len(items) == 2 else None

        ds = await eventually(both, timeout=10, msg="a Deployment per group")
        a, b = ds["counter-site-a"], ds["counter-site-b"]
        ca, cb = a["spec"]["template"]["spec"]["containers"][0], b["spec"]["template"]["spec"]["containers"][0]
        assert a["spec"]["replicas"] == 3 and ca["image"] == "registry.example.com/edge/counter:v2"
        assert a["spec"]["template"]["spec"]["nodeSelector"] == {BELONGING: "site-a"}
        assert b["spec"]["replicas"] == 1 and cb["image"] == "mirror.site-b.local/edge/counter:v1"
        assert cb["env"] == [{"name": "MODE", "value": "low-power"}] and cb["args"] == ["--slow"] and cb["resources"] == {"limits": {"cpu": "250m"}}
        assert a["metadata"]["ownerReferences"][0]["kind"] == "EdgeApplication"

        async def status() -> list[dict[str, Any]] | None:
            st = (await store.get(EDGEAPPLICATIONS, "default", "counter")).get("status") or {}
            return st.get("workloadStatus")

        ws = await eventually(status, timeout=10, msg="status")
        assert [(w["identifier"]["name"], w["identifier"]["kind"], w["conditions"]) for w in ws] == [("counter-site-a", "Deployment", "Processing"), ("counter-site-b", "Deployment", "Processing")]
        # one group out of the scope, the other's override changed
        await edit(store, EDGEAPPLICATIONS, "default", "counter", lambda a: a["spec"]["workloadScope"].update(targetNodeGroups=[{"name": "site-a", "overriders": {"replicas": 5}}]))

        async def updated() -> bool:
            items, _ = await store.list(DEPLOYMENTS, "default", label_selector="apps.kubeedge.io/edgeapplication-name=counter")
            return [(d["metadata"]["name"], d["spec"]["replicas"], d["spec"]["template"]["spec"]["containers"][0]["image"]) for d in items] == [("counter-site-a", 5, "registry.example.com/edge/counter:v1")]

        await eventually(updated, timeout=10, msg="site-b removed, site-a updated")
        await store.delete(EDGEAPPLICATIONS, "default", "counter")

        async def gone() -> bool:
            try:
                await store.get(DEPLOYMENTS, "default", "counter-site-a")
            except NotFound:
                return True
            return False

        await eventually(gone, timeout=10, msg="cascade")
