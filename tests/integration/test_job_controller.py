"""jobcontroller against a real nats-server: completions and parallelism, backoff limit,
deadline, suspend, Indexed, TTL after finishing."""

from __future__ import annotations

from typing import Any

from edgebus.errors import NotFound
from edgebus.objects import JOBS
from edgebus.objectstore import ObjectStore
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import controllers, edit, pods_of, set_pod_status


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}, **spec},
    }


async def cond(store: ObjectStore, name: str, type_: str) -> dict[str, Any] | None:
    st = (await store.get(JOBS, "default", name)).get("status") or {}
    return next((c for c in st.get("conditions") or [] if c["type"] == type_ and c["status"] == "True"), None)


async def finish_active(store: ObjectStore, uid: str, phase: str) -> int:
    n = 0
    for p in await pods_of(store, "default", uid):
        await set_pod_status(store, "default", p["metadata"]["name"], phase)
        n += 1
    return n


async def test_completions_parallelism_and_ttl(hub: Hub) -> None:
    async with controllers(hub, "jobcontroller", "garbagecollector") as store:
        # a TTL long enough to see the Job Complete on a loaded machine before it goes
        obj = await store.create(JOBS, job("pi", completions=5, parallelism=2, ttlSecondsAfterFinished=5), namespace="default")
        uid = obj["metadata"]["uid"]
        assert obj["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        most = 0
        for _ in range(5):

            async def some_active() -> bool:
                return len(await pods_of(store, "default", uid)) > 0

            await eventually(some_active, timeout=10, msg="active pods")
            active = await pods_of(store, "default", uid)
            most = max(most, len(active))
            assert all(p["metadata"]["labels"]["job-name"] == "pi" for p in active)
            await set_pod_status(store, "default", active[0]["metadata"]["name"], "Succeeded")

            async def progressed() -> bool:
                return (await cond(store, "pi", "Complete")) is not None or len(await pods_of(store, "default", uid)) > 0
            await eventually(progressed, timeout=10, msg="next pod")
            if await cond(store, "pi", "Complete"):
                break
        assert most == 2
        await eventually(lambda: cond(store, "pi", "Complete"), timeout=10, msg="complete")
        st = (await store.get(JOBS, "default", "pi"))["status"]
        assert st["succeeded"] == 5 and st["completionTime"] and st["startTime"]

        async def gone() -> bool:
            try:
                await store.get(JOBS, "default", "pi")
            except NotFound:
                return True
            return False

        await eventually(gone, timeout=30, msg="deleted after its TTL")
        await eventually(lambda: _none_at_all(store, uid), timeout=15, msg="its pods deleted first")


async def test_backoff_limit(hub: Hub) -> None:
    async with controllers(hub, "jobcontroller", jobcontroller={"backoff_base": 0.1}) as store:
        obj = await store.create(JOBS, job("flaky", backoffLimit=2), namespace="default")
        uid = obj["metadata"]["uid"]
        for i in range(3):

            async def one() -> bool:
                return len(await pods_of(store, "default", uid)) == 1

            await eventually(one, timeout=10, msg=f"attempt {i + 1}")
            await finish_active(store, uid, "Failed")
        c = await eventually(lambda: cond(store, "flaky", "Failed"), timeout=10, msg="failed")
        assert c["reason"] == "BackoffLimitExceeded" and c["message"] == "Job has reached the specified backoff limit"
        assert (await store.get(JOBS, "default", "flaky"))["status"]["failed"] == 3


async def test_deadline_and_suspend(hub: Hub) -> None:
    async with controllers(hub, "jobcontroller") as store:
        obj = await store.create(JOBS, job("slow", activeDeadlineSeconds=2, parallelism=2, completions=4), namespace="default")

        async def two() -> bool:
            return len(await pods_of(store, "default", obj["metadata"]["uid"])) == 2

        await eventually(two, timeout=10, msg="2 active")
        c = await eventually(lambda: cond(store, "slow", "Failed"), timeout=10, msg="deadline")
        assert c["reason"] == "DeadlineExceeded"
        await eventually(lambda: _none(store, obj["metadata"]["uid"]), timeout=10, msg="active pods deleted")

        sus = await store.create(JOBS, job("later", suspend=True), namespace="default")
        await eventually(lambda: cond(store, "later", "Suspended"), timeout=10, msg="suspended")
        assert await pods_of(store, "default", sus["metadata"]["uid"]) == []
        await edit(store, JOBS, "default", "later", lambda j: j["spec"].update(suspend=False))

        async def resumed() -> bool:
            return len(await pods_of(store, "default", sus["metadata"]["uid"])) == 1

        await eventually(resumed, timeout=10, msg="resumed")


async def _none(store: ObjectStore, uid: str) -> bool:
    return await pods_of(store, "default", uid) == []


async def test_indexed(hub: Hub) -> None:
    async with controllers(hub, "jobcontroller") as store:
        obj = await store.create(JOBS, job("idx", completions=3, parallelism=3, completionMode="Indexed"), namespace="default")

        async def three() -> list[dict[str, Any]] | None:
            pods = await pods_of(store, "default", obj["metadata"]["uid"])
            return pods if len(pods) == 3 else None

        pods = await eventually(three, timeout=10, msg="3 indexed pods")
        assert sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1", "2"]
        for p in pods:
            await set_pod_status(store, "default", p["metadata"]["name"], "Succeeded")
        await eventually(lambda: cond(store, "idx", "Complete"), timeout=10, msg="complete")
        assert (await store.get(JOBS, "default", "idx"))["status"]["completedIndexes"] == "0-2"


async def _none_at_all(store: ObjectStore, uid: str) -> bool:
    return await pods_of(store, "default", uid, active=False) == []
