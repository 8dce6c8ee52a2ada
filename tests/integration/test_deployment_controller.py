"""deploymentcontroller + replicasetcontroller against a real nats-server: rollout,
revisions, rollback, Recreate, pause, status conditions."""

from __future__ import annotations


import asyncio
from typing import Any

from edgebus.objects import DEPLOYMENTS, PODS, REPLICASETS
from edgebus.objectstore import ObjectStore
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import controllers, edit, set_pod_status


def deployment(name: str, replicas: int, image: str = "busybox:1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": image}]}},
            **spec,
        },
    }


async def kubelet(store: ObjectStore, stop: asyncio.Event, ready: bool = True) -> None:
    """Every pod without status becomes Running and Ready; a deleted (unbound) pod is gone."""
    while not stop.is_set():
        items, _ = await store.list(PODS, "default")
        for p in items:
            if not p.get("status"):
                await set_pod_status(store, "default", p["metadata"]["name"], "Running", ready=ready)
        await asyncio.sleep(0.1)


async def rs_of(store: ObjectStore, name: str) -> list[dict[str, Any]]:
    items, _ = await store.list(REPLICASETS, "default")
    return [r for r in items if (r["metadata"].get("ownerReferences") or [{}])[0].get("name") == name]


async def set_image(store: ObjectStore, name: str, image: str) -> None:
    await edit(store, DEPLOYMENTS, "default", name, lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image=image))


async def test_rolling_update_and_rollback(hub: Hub) -> None:
    async with controllers(hub, "deploymentcontroller", "replicasetcontroller") as store:
        stop = asyncio.Event()
        k = asyncio.create_task(kubelet(store, stop))
        try:
            await store.create(DEPLOYMENTS, deployment("web", 4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}), namespace="default")

            async def rolled_out(image: str, revision: str) -> bool:
                d = await store.get(DEPLOYMENTS, "default", "web")
                st = d.get("status") or {}
                conds = {c["type"]: c for c in st.get("conditions") or []}
                return (
                    st.get("observedGeneration") == d["metadata"]["generation"]
                    and st.get("updatedReplicas") == 4 == st.get("availableReplicas") == st.get("replicas")
                    and conds.get("Available", {}).get("status") == "True"
                    and conds.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable"
                    and d["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == revision
                    and d["spec"]["template"]["spec"]["containers"][0]["image"] == image
                )

            await eventually(lambda: rolled_out("busybox:1", "1"), timeout=20, msg="first rollout")
            # a rolling update never has more than replicas + maxSurge pods, nor fewer than replicas ready
            await set_image(store, "web", "busybox:2")
            seen_max = 0
            for _ in range(400):
                items, _ = await store.list(PODS, "default")
                live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
                seen_max = max(seen_max, len(live))
                if await rolled_out("busybox:2", "2"):
                    break
                await asyncio.sleep(0.05)
            assert await rolled_out("busybox:2", "2")
            assert seen_max <= 5
            sets = await rs_of(store, "web")
            assert len(sets) == 2
            by_rev = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r for r in sets}
            assert by_rev["1"]["spec"]["replicas"] == 0 and by_rev["2"]["spec"]["replicas"] == 4
            assert by_rev["2"]["metadata"]["name"].startswith("web-")
            assert by_rev["2"]["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] in by_rev["2"]["metadata"]["name"]
            # rollback: the template goes back; the old ReplicaSet becomes revision 3
            await set_image(store, "web", "busybox:1")
            await eventually(lambda: rolled_out("busybox:1", "3"), timeout=20, msg="rollback")
            sets = await rs_of(store, "web")
            assert len(sets) == 2
            back = next(r for r in sets if r["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1")
            assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
        finally:
            stop.set()
            await k


async def test_recreate_and_history_limit(hub: Hub) -> None:
    async with controllers(hub, "deploymentcontroller", "replicasetcontroller") as store:
        stop = asyncio.Event()
        k = asyncio.create_task(kubelet(store, stop))
        try:
            await store.create(DEPLOYMENTS, deployment("db", 2, strategy={"type": "Recreate"}, revisionHistoryLimit=1), namespace="default")

            async def updated(image: str) -> bool:
                st = (await store.get(DEPLOYMENTS, "default", "db")).get("status") or {}
                pods, _ = await store.list(PODS, "default", label_selector="app=db")
                return st.get("updatedReplicas") == 2 == st.get("availableReplicas") and all(p["spec"]["containers"][0]["image"] == image for p in pods)

            await eventually(lambda: updated("busybox:1"), timeout=20, msg="created")
            for tag in ("2", "3"):
                await set_image(store, "db", f"busybox:{tag}")
                await eventually(lambda: updated(f"busybox:{tag}"), timeout=20, msg=f"recreated with {tag}")
            # revisionHistoryLimit 1: the new ReplicaSet and one old one are left

            async def two_left() -> bool:
                return len(await rs_of(store, "db")) == 2

            await eventually(two_left, timeout=10, msg="history trimmed")
        finally:
            stop.set()
            await k


async def test_paused_deployment_does_not_roll_out(hub: Hub) -> None:
    async with controllers(hub, "deploymentcontroller", "replicasetcontroller") as store:
        stop = asyncio.Event()
        k = asyncio.create_task(kubelet(store, stop))
        try:
            await store.create(DEPLOYMENTS, deployment("api", 2, paused=False), namespace="default")

            async def available() -> bool:
                return ((await store.get(DEPLOYMENTS, "default", "api")).get("status") or {}).get("availableReplicas") == 2

            await eventually(available, timeout=20, msg="available")
            def pause(d: dict[str, Any]) -> None:
                d["spec"]["paused"] = True
                d["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:9"
                d["spec"]["replicas"] = 3

            await edit(store, DEPLOYMENTS, "default", "api", pause)

            async def paused_scaled() -> bool:
                dd = await store.get(DEPLOYMENTS, "default", "api")
                conds = {c["type"]: c for c in dd["status"].get("conditions") or []}
                return dd["status"].get("availableReplicas") == 3 and conds["Progressing"]["reason"] == "DeploymentPaused"

            await eventually(paused_scaled, timeout=20, msg="scaled while paused")
            assert len(await rs_of(store, "api")) == 1  # no rollout while paused
        finally:
            stop.set()
            await k


async def test_scaling_in_the_middle_of_a_rollout_is_proportional(hub: Hub) -> None:
    async with controllers(hub, "deploymentcontroller", "replicasetcontroller") as store:
        stop = asyncio.Event()
        k = asyncio.create_task(kubelet(store, stop))
        try:
            await store.create(DEPLOYMENTS, deployment("mid", 4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}), namespace="default")

            async def ready(n: int) -> bool:
                return ((await store.get(DEPLOYMENTS, "default", "mid")).get("status") or {}).get("availableReplicas") == n

            await eventually(lambda: ready(4), timeout=20, msg="4 available")
            stop.set()
            await k  # from now on new pods never become ready: the rollout stalls with surge pods
            await set_image(store, "mid", "busybox:2")

            async def stalled() -> dict[str, int] | None:
                sets = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"] for r in await rs_of(store, "mid")}
                return sets if sets == {"busybox:1": 4, "busybox:2": 2} else None

            await eventually(stalled, timeout=20, msg="a stalled rollout: 4 old, 2 new")
            await edit(store, DEPLOYMENTS, "default", "mid", lambda d: d["spec"].update(replicas=8))

            async def scaled() -> dict[str, int] | None:
                sets = {r["spec"]["template"]["spec"]["containers"][0]["image"]: r["spec"]["replicas"] for r in await rs_of(store, "mid")}
                return sets if sum(sets.values()) == 10 else None

            # allowed 8 + 2 = 10, spread 4:2 -> the old one grows to 7 (its share), the new one to 3
            assert await eventually(scaled, timeout=20, msg="scaled in proportion") == {"busybox:1": 7, "busybox:2": 3}
        finally:
            stop.set()
            await k
