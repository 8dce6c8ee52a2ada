"""daemonsetcontroller against a real nats-server: one pod per matching node, nodes that
join later, node selectors and taints, rolling update through ControllerRevisions."""

from __future__ import annotations

import asyncio
from typing import Any

from edgebus.objects import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS
from edgebus.objectstore import ObjectStore
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import controllers, edit, finish_terminating, pods_of, set_pod_status


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}, "spec": {"taints": taints or []}}


def daemonset(name: str, **tspec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}], **tspec}},
        },
    }


async def placement(store: ObjectStore, uid: str) -> dict[str, str]:
    return {p["spec"].get("nodeName", ""): p["spec"]["containers"][0]["image"] for p in await pods_of(store, "default", uid)}


async def test_one_pod_per_node_including_nodes_that_join_later(hub: Hub) -> None:
    async with controllers(hub, "daemonsetcontroller") as store:
        for n in ("edge-1", "edge-2"):
            await store.create(NODES, node(n, {"site": "a"}))
        await store.create(NODES, node("edge-9", {"site": "b"}))
        ds = await store.create(DAEMONSETS, daemonset("agent", nodeSelector={"site": "a"}), namespace="default")
        uid = ds["metadata"]["uid"]

        async def on(*nodes: str) -> bool:
            return set(await placement(store, uid)) == set(nodes) and len(await pods_of(store, "default", uid)) == len(nodes)

        await eventually(lambda: on("edge-1", "edge-2"), timeout=15, msg="a pod on each site-a node")
        pod = (await pods_of(store, "default", uid))[0]
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert terms == [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [pod["spec"]["nodeName"]]}]}]
        assert {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"} in pod["spec"]["tolerations"]
        # a node that joins later gets its pod; a tainted one only with a toleration
        await store.create(NODES, node("edge-3", {"site": "a"}))
        await store.create(NODES, node("edge-4", {"site": "a"}, taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]))
        await eventually(lambda: on("edge-1", "edge-2", "edge-3"), timeout=15, msg="edge-3 joined")
        # a node that stops matching loses its pod
        await edit(store, NODES, None, "edge-1", lambda n: n["metadata"]["labels"].update(site="b"))
        await eventually(lambda: on("edge-2", "edge-3"), timeout=15, msg="edge-1 left site a")

        async def st() -> bool:
            s = (await store.get(DAEMONSETS, "default", "agent")).get("status") or {}
            return s.get("desiredNumberScheduled") == 2 and s.get("currentNumberScheduled") == 2 and s.get("numberMisscheduled") == 0

        await eventually(st, timeout=10, msg="status")


async def test_rolling_update_and_revisions(hub: Hub) -> None:
    async with controllers(hub, "daemonsetcontroller") as store:
        for n in ("edge-1", "edge-2", "edge-3"):
            await store.create(NODES, node(n))
        ds = await store.create(DAEMONSETS, daemonset("agent"), namespace="default")
        uid = ds["metadata"]["uid"]
        stop = asyncio.Event()

        async def kubelet() -> None:
            while not stop.is_set():
                for p in await pods_of(store, "default", uid):
                    if not p.get("status"):
                        await set_pod_status(store, "default", p["metadata"]["name"], "Running", ready=True)
                await finish_terminating(store)
                await asyncio.sleep(0.05)

        k = asyncio.create_task(kubelet())
        try:

            async def all_image(image: str) -> bool:
                pl = await placement(store, uid)
                s = (await store.get(DAEMONSETS, "default", "agent")).get("status") or {}
                return len(pl) == 3 and set(pl.values()) == {image} and s.get("updatedNumberScheduled") == 3 and s.get("numberAvailable") == 3

            await eventually(lambda: all_image("busybox:1"), timeout=15, msg="3 pods")
            await edit(store, DAEMONSETS, "default", "agent", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="busybox:2"))
            # maxUnavailable 1: never fewer than 2 nodes with a ready pod
            worst = 3
            for _ in range(300):
                ready = [p for p in await pods_of(store, "default", uid) if (p.get("status") or {}).get("conditions", [{}])[0].get("status") == "True"]
                worst = min(worst, len({p["spec"]["nodeName"] for p in ready}))
                if await all_image("busybox:2"):
                    break
                await asyncio.sleep(0.03)
            assert await all_image("busybox:2")
            assert worst >= 2
            revs, _ = await store.list(CONTROLLERREVISIONS, "default")
            assert sorted(r["revision"] for r in revs) == [1, 2]
            new = next(r for r in revs if r["revision"] == 2)
            assert new["data"]["spec"]["template"]["$patch"] == "replace"
            assert new["data"]["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:2"
            pod = (await pods_of(store, "default", uid))[0]
            assert new["metadata"]["name"] == f"agent-{pod['metadata']['labels']['controller-revision-hash']}"
        finally:
            stop.set()
            await k
        items, _ = await store.list(PODS, "default")
        assert all(p["metadata"]["labels"]["app"] == "agent" for p in items)
