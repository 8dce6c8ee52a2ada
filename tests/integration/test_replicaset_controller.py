"""replicasetcontroller against a real nats-server: replicas kept, adoption, status."""

from __future__ import annotations

from typing import Any


from edgebus.objects import PODS, REPLICASETS
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import controllers, edit, pods_of, set_pod_status


def rs(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
            **spec,
        },
    }


async def test_replicas_are_kept(hub: Hub) -> None:
    async with controllers(hub, "replicasetcontroller") as store:
        obj = await store.create(REPLICASETS, rs("web", 3), namespace="default")
        uid = obj["metadata"]["uid"]

        async def count(n: int) -> bool:
            return len(await pods_of(store, "default", uid)) == n

        await eventually(lambda: count(3), timeout=15, msg="3 pods")
        pods = await pods_of(store, "default", uid)
        assert all(p["metadata"]["name"].startswith("web-") and p["metadata"]["labels"] == {"app": "web"} for p in pods)
        assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods)
        # a deleted pod is replaced
        await store.delete(PODS, "default", pods[0]["metadata"]["name"])
        await eventually(lambda: count(3), timeout=15, msg="replaced")
        names = {p["metadata"]["name"] for p in await pods_of(store, "default", uid)}
        assert pods[0]["metadata"]["name"] not in names
        # scale down: the not-ready ones go first
        for p in await pods_of(store, "default", uid):
            if p["metadata"]["name"] != sorted(names)[0]:
                continue
            await set_pod_status(store, "default", p["metadata"]["name"], "Running", ready=True)
        await edit(store, REPLICASETS, "default", "web", lambda r: r["spec"].update(replicas=1))
        await eventually(lambda: count(1), timeout=15, msg="scaled to 1")
        left = await pods_of(store, "default", uid)
        assert left[0]["metadata"]["name"] == sorted(names)[0]

        async def status_ok() -> bool:
            st = (await store.get(REPLICASETS, "default", "web")).get("status") or {}
            return st.get("replicas") == 1 and st.get("readyReplicas") == 1 and st.get("availableReplicas") == 1 and st.get("observedGeneration") == 2

        await eventually(status_ok, timeout=15, msg="status")


async def test_orphans_are_adopted(hub: Hub) -> None:
    async with controllers(hub, "replicasetcontroller") as store:
        for i in range(2):
            await store.create(PODS, {"metadata": {"name": f"stray-{i}", "labels": {"app": "api"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}, namespace="default")
        obj = await store.create(REPLICASETS, rs("api", 3), namespace="default")

        async def adopted() -> bool:
            return len(await pods_of(store, "default", obj["metadata"]["uid"])) == 3

        await eventually(adopted, timeout=15, msg="2 adopted + 1 created")
        names = {p["metadata"]["name"] for p in await pods_of(store, "default", obj["metadata"]["uid"])}
        assert {"stray-0", "stray-1"} <= names
