"""statefulsetcontroller against a real nats-server: ordered creation, stable names, pods
re-created with the same name, scale-down from the top, rolling update with a partition."""

from __future__ import annotations

import asyncio
from typing import Any

from edgebus.objects import PODS, STATEFULSETS
from edgebus.objectstore import ObjectStore
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import controllers, edit, pods_of, set_pod_status


def sts(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
            **spec,
        },
    }


async def names(store: ObjectStore, uid: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in await pods_of(store, "default", uid))


async def test_ordered_ready_creation_and_stable_names(hub: Hub) -> None:
    async with controllers(hub, "statefulsetcontroller") as store:
        obj = await store.create(STATEFULSETS, sts("db", 3), namespace="default")
        uid = obj["metadata"]["uid"]
        await eventually(lambda: names(store, uid), timeout=10, msg="db-0")
        await asyncio.sleep(0.5)
        assert await names(store, uid) == ["db-0"]  # db-1 waits for db-0 to be Running and Ready
        pod = await store.get(PODS, "default", "db-0")
        assert pod["spec"]["hostname"] == "db-0" and pod["spec"]["subdomain"] == "db"
        assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
        assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "0"
        for i in range(3):
            await eventually(lambda: names_has(store, uid, f"db-{i}"), timeout=10, msg=f"db-{i}")
            await set_pod_status(store, "default", f"db-{i}", "Running", ready=True)
        assert await names(store, uid) == ["db-0", "db-1", "db-2"]
        # a deleted pod comes back with the same name, again and again
        for _ in range(3):
            before = (await store.get(PODS, "default", "db-1"))["metadata"]["uid"]
            await store.delete(PODS, "default", "db-1")

            async def back() -> bool:
                try:
                    return (await store.get(PODS, "default", "db-1"))["metadata"]["uid"] != before
                except Exception:  # noqa: BLE001
                    return False

            await eventually(back, timeout=10, msg="db-1 re-created")
            await set_pod_status(store, "default", "db-1", "Running", ready=True)
        # scale down: from the highest ordinal
        await edit(store, STATEFULSETS, "default", "db", lambda s: s["spec"].update(replicas=1))
        await eventually(lambda: names_are(store, uid, ["db-0"]), timeout=10, msg="scaled to db-0")

        async def st() -> bool:
            s = (await store.get(STATEFULSETS, "default", "db")).get("status") or {}
            return s.get("replicas") == 1 and s.get("readyReplicas") == 1 and s.get("currentRevision") == s.get("updateRevision") != ""

        await eventually(st, timeout=10, msg="status")


async def names_has(store: ObjectStore, uid: str, name: str) -> bool:
    return name in await names(store, uid)


async def names_are(store: ObjectStore, uid: str, want: list[str]) -> bool:
    return await names(store, uid) == want


async def test_parallel_and_partitioned_rolling_update(hub: Hub) -> None:
    async with controllers(hub, "statefulsetcontroller") as store:
        obj = await store.create(STATEFULSETS, sts("web", 3, podManagementPolicy="Parallel", updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}), namespace="default")
        uid = obj["metadata"]["uid"]
        await eventually(lambda: names_are(store, uid, ["web-0", "web-1", "web-2"]), timeout=10, msg="all at once")
        stop = asyncio.Event()

        async def kubelet() -> None:
            while not stop.is_set():
                for p in await pods_of(store, "default", uid):
                    if not p.get("status"):
                        await set_pod_status(store, "default", p["metadata"]["name"], "Running", ready=True)
                await asyncio.sleep(0.05)

        k = asyncio.create_task(kubelet())
        try:
            await edit(store, STATEFULSETS, "default", "web", lambda s: s["spec"]["template"]["spec"]["containers"][0].update(image="busybox:2"))

            async def images() -> dict[str, str]:
                return {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in await pods_of(store, "default", uid)}

            async def partitioned() -> bool:
                s = (await store.get(STATEFULSETS, "default", "web")).get("status") or {}
                return await images() == {"web-0": "busybox:1", "web-1": "busybox:2", "web-2": "busybox:2"} and s.get("updatedReplicas") == 2

            await eventually(partitioned, timeout=15, msg="ordinals >= partition updated")
            await asyncio.sleep(0.5)
            assert (await images())["web-0"] == "busybox:1"
        finally:
            stop.set()
            await k
