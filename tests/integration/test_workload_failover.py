"""Workload controllers are restart-safe and scale as hot standbys: two replicas of the
replicaset controller, the leader stopped in the middle of a scale-up; the standby takes the
lease over, rebuilds its view from the objects and scales on to exactly the wanted pods
(nothing doubled, nothing missing)."""

from __future__ import annotations

import asyncio


from edgebus.objects import PODS, REPLICASETS
from edgebus.objectstore import ObjectStore
from edgebus.testing.services import build_service
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import edit


async def test_standby_takes_over_without_duplicates(hub: Hub) -> None:
    a = build_service("replicasetcontroller", nats=hub.nats_settings("replicasetcontroller"), replicasetcontroller={"lease_ttl": 1.5})
    b = build_service("replicasetcontroller", nats=hub.nats_settings("replicasetcontroller"), replicasetcontroller={"lease_ttl": 1.5})
    bus = hub.bus("test")
    await bus.connect(retry_for=10)
    store = ObjectStore(bus)
    await store.ensure()
    await store.ensure_system_namespaces()
    await a.start()
    await eventually(lambda: a.ctx.synced, timeout=10, msg="a leads")
    await b.start()
    try:
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "many"},
            "spec": {"replicas": 60, "selector": {"matchLabels": {"app": "many"}}, "template": {"metadata": {"labels": {"app": "many"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}},
        }
        await store.create(REPLICASETS, rs, namespace="default")

        async def some() -> bool:
            items, _ = await store.list(PODS, "default", label_selector="app=many")
            return len(items) >= 3

        await eventually(some, timeout=10, interval=0.01, msg="scale-up under way")
        await a.stop()  # the leader goes in the middle of it (or just after)
        await eventually(lambda: b.ctx.synced, timeout=15, msg="the standby took the lease and listed everything")
        await edit(store, REPLICASETS, "default", "many", lambda r: r["spec"].update(replicas=90))

        async def exactly(n: int) -> bool:
            items, _ = await store.list(PODS, "default", label_selector="app=many")
            return len(items) == n

        # the standby knows the pods its predecessor made: it creates only the difference
        await eventually(lambda: exactly(90), timeout=30, msg="the standby scales to 90")
        await asyncio.sleep(1.0)
        assert await exactly(90)
        st = (await store.get(REPLICASETS, "default", "many"))["status"]
        assert st["replicas"] == 90 and st["observedGeneration"] == 2
    finally:
        await b.stop()
        await a.stop()
        await bus.close()
