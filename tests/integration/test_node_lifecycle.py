"""cloudhub's node lifecycle against a real nats-server, with hollow nodes: heartbeats are
published into EDGEBUS_UP exactly as a node's edgehub forwards them.

* an unreachable node gets Ready=Unknown and the unreachable taints, its pods Ready=False,
  and only a pod that opted in (tolerationSeconds) is evicted; back, all is undone;
* a flood of heartbeats from 1,000 nodes costs bounded store work per heartbeat, and
  readiness is never evaluated by listing nodes;
* edge events become aggregated Event objects, each occurrence counted once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edgebus import names, topology
from edgebus.bus import Bus, consumer_state
from edgebus.envelope import Envelope
from edgebus.errors import NotFound
from edgebus.objects import EVENTS, NODES, PODS
from edgebus.objectstore import ObjectStore
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually
from services.cloudhub import logic

GRACE = 3.0


@pytest.fixture
async def store(bus: Bus) -> ObjectStore:
    s = ObjectStore(bus)
    await s.ensure()
    await s.ensure_system_namespaces()
    return s


@pytest.fixture
async def cloudhub(hub, store: ObjectStore) -> AsyncIterator[Any]:
    svc = build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub={"node_grace_period": GRACE, "lease_ttl": 2, "lifecycle_interval": 0.5})
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


async def heartbeat(bus: Bus, node: str) -> None:
    env = Envelope.new(source="edgehub", operation="keepalive", resource="nodes", content={"node": node, "time": time.time_ns(), "link": True})
    await bus.js_publish(names.up_subject(node, names.UP_HEARTBEAT), env, stream=names.STREAM_UP)


def ready(node: dict[str, Any]) -> str:
    return str((logic.ready_condition(node) or {}).get("status") or "")


async def running_pod(store: ObjectStore, name: str, node: str, tolerations: list[dict[str, Any]] | None = None) -> None:
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    if tolerations:
        spec["tolerations"] = tolerations
    await store.create(PODS, {"metadata": {"name": name, "namespace": "default"}, "spec": spec})

    def run(p: dict[str, Any]) -> dict[str, Any]:
        p["status"] = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "True"}]}
        return p

    await store.mutate(PODS, "default", name, run)


def pod_ready(p: dict[str, Any]) -> str:
    return next(c["status"] for c in p["status"]["conditions"] if c["type"] == "Ready")


async def test_unreachable_node_keeps_its_pods_and_comes_back_whole(bus: Bus, store: ObjectStore, cloudhub: Any) -> None:
    await store.create(NODES, {"metadata": {"name": "edge-a"}})
    await running_pod(store, "stays", "edge-a")
    failover = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]
    await running_pod(store, "fails-over", "edge-a", failover)

    beating = True

    async def beat() -> None:
        while True:
            if beating:
                await heartbeat(bus, "edge-a")
            await asyncio.sleep(0.3)

    task = asyncio.create_task(beat())
    try:
        await eventually(lambda: _is(store, "edge-a", "True"), timeout=10, msg="edge-a Ready")
        t0 = time.monotonic()
        beating = False
        await eventually(lambda: _is(store, "edge-a", "Unknown"), timeout=GRACE + 10, msg="edge-a NotReady")
        assert time.monotonic() - t0 >= GRACE - 0.5, "not before the grace period"
        node = await store.get(NODES, None, "edge-a")
        assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} == {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")}

        async def stays_not_ready() -> bool:
            return pod_ready(await store.get(PODS, "default", "stays")) == "False"

        await eventually(stays_not_ready, timeout=10, msg="the pod's Ready condition turns False")
        stays = await store.get(PODS, "default", "stays")
        assert not stays["metadata"].get("deletionTimestamp"), "not evicted by default"
        assert {c["type"]: c["status"] for c in stays["status"]["conditions"]}["ContainersReady"] == "True"

        async def evicted() -> bool:
            try:
                return bool((await store.get(PODS, "default", "fails-over"))["metadata"].get("deletionTimestamp"))
            except NotFound:
                return True

        await eventually(evicted, timeout=10, msg="the pod that tolerates the taint for 1 s is evicted")
        await asyncio.sleep(1.5)
        assert not (await store.get(PODS, "default", "stays"))["metadata"].get("deletionTimestamp"), "still not evicted"

        beating = True
        await eventually(lambda: _is(store, "edge-a", "True"), timeout=10, msg="edge-a Ready again")
        node = await store.get(NODES, None, "edge-a")
        assert not (node.get("spec") or {}).get("taints"), "taints removed"

        async def stays_ready() -> bool:
            return pod_ready(await store.get(PODS, "default", "stays")) == "True"

        await eventually(stays_ready, timeout=10, msg="the pod's readiness comes back from its last report")
        events, _ = await store.list(EVENTS, "default")
        reasons = Counter((e["reason"], e["involvedObject"]["name"]) for e in events)
        assert reasons[("NodeNotReady", "edge-a")] == 1 and reasons[("NodeReady", "edge-a")] == 1
        assert reasons[("NodeNotReady", "stays")] == 1 and reasons[("TaintManagerEviction", "fails-over")] == 1
    finally:
        task.cancel()


async def _is(store: ObjectStore, node: str, status: str) -> bool:
    return ready(await store.get(NODES, None, node)) == status


async def test_stale_heartbeats_do_not_revive_a_node(bus: Bus, store: ObjectStore, hub: Any) -> None:
    """A backlog the cloud stored before cloudhub came up is judged on the cloud's clock."""
    await topology.ensure_cloud_streams(bus)
    await store.create(NODES, {"metadata": {"name": "edge-b"}})
    await heartbeat(bus, "edge-b")
    await asyncio.sleep(GRACE + 0.5)  # stored, not consumed: cloudhub is not running yet
    svc = build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub={"node_grace_period": GRACE, "lease_ttl": 2})
    await svc.start()
    try:
        await asyncio.sleep(2)
        assert ready(await store.get(NODES, None, "edge-b")) == "", "a heartbeat stored 3.5 s ago is stale with a 3 s grace period"
        await heartbeat(bus, "edge-b")
        await eventually(lambda: _is(store, "edge-b", "True"), timeout=10, msg="a fresh heartbeat counts")
    finally:
        await svc.stop()


class Spy:
    """Counts the key-value operations of one object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.calls: Counter[str] = Counter()
        kv = store.kv
        for op in ("get", "entry", "update", "create", "list", "put"):
            orig = getattr(kv, op)

            def wrap(*a: Any, _orig: Any = orig, _op: str = op, **kw: Any) -> Any:
                self.calls[_op] += 1
                return _orig(*a, **kw)

            setattr(kv, op, wrap)


async def test_a_flood_of_heartbeats_costs_bounded_work_and_no_lists(bus: Bus, store: ObjectStore, hub: Any) -> None:
    n, rounds = 1000, 4
    grace = 200.0  # a node's heartbeat is written at most every grace/4 = 50 s: all rounds fit in one window
    await topology.ensure_cloud_streams(bus)
    await asyncio.gather(*(store.create(NODES, {"metadata": {"name": f"hollow-{i:04d}"}}) for i in range(n)))
    svc = build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub={"node_grace_period": grace, "lease_ttl": 2})
    spy = Spy(svc.ctx.store)
    await svc.start()
    try:
        t0 = time.monotonic()
        for _ in range(rounds):
            await asyncio.gather(*(heartbeat(bus, f"hollow-{i:04d}") for i in range(n)))

        async def drained() -> bool:
            st = await consumer_state(bus, names.STREAM_UP, names.CONSUMER_CLOUDHUB)
            return st.num_pending == 0 and st.num_ack_pending == 0

        await eventually(drained, timeout=120, msg="every heartbeat ingested")
        elapsed = time.monotonic() - t0
        assert elapsed < grace / 4, "the test needs all rounds inside one write window"
        nodes, _ = await store.list(NODES)
        assert sum(1 for x in nodes if ready(x) == "True") == n
        heartbeats = n * rounds
        writes, reads = spy.calls["update"], spy.calls["entry"]
        print(f"\n{heartbeats} heartbeats in {elapsed:.1f}s: {writes} writes, {reads} reads, {spy.calls['list']} lists")
        assert writes <= n * 1.05, "at most one write per node per grace/4"
        assert reads <= n * 1.2, "the node view spares reads for nodes recorded recently"
        assert (writes + reads) / heartbeats <= 0.6, "bounded work per heartbeat"
        assert spy.calls["list"] == 0, "readiness is never evaluated by listing nodes"
        # the lifecycle holds one deadline per node, observed from its watch
        await eventually(lambda: _tracked(svc.ctx.lifecycle, n), timeout=20, msg="every node tracked")
    finally:
        await svc.stop()


async def _tracked(lifecycle: Any, n: int) -> bool:
    return len(lifecycle.liveness) == n


async def test_edge_events_are_aggregated_and_counted_once(bus: Bus, store: ObjectStore, cloudhub: Any) -> None:
    await store.create(NODES, {"metadata": {"name": "edge-c"}})
    pod = await store.create(PODS, {"metadata": {"name": "crashy", "namespace": "default"}, "spec": {"nodeName": "edge-c", "containers": [{"name": "c", "image": "busybox"}]}})
    ref = {"kind": "Pod", "namespace": "default", "name": "crashy", "uid": pod["metadata"]["uid"], "fieldPath": "spec.containers{c}"}

    async def report(t: int, reason: str = "BackOff", node: str = "edge-c") -> None:
        content = {"time": t, "event": {"involvedObject": ref, "type": "Warning", "reason": reason, "message": "Back-off restarting failed container c", "component": "edged", "host": node}}
        env = Envelope.new(source="edged", operation="insert", resource="events", content=content)
        await bus.js_publish(names.up_subject(node, names.UP_EVENT, names.ObjectRef("pods", "default", "crashy")), env, stream=names.STREAM_UP)

    t = time.time_ns()
    await report(t)
    await report(t)  # the same occurrence delivered again
    await report(t + 1_000_000_000)
    await report(t + 2_000_000_000)

    async def counted() -> dict[str, Any] | None:
        evs, _ = await store.list(EVENTS, "default", field_selector="involvedObject.name=crashy")
        return evs[0] if evs and evs[0]["count"] >= 3 else None

    ev = await eventually(counted, timeout=10, msg="three occurrences")
    await asyncio.sleep(0.5)
    evs, _ = await store.list(EVENTS, "default", field_selector=f"involvedObject.uid={pod['metadata']['uid']}")
    assert len(evs) == 1 and evs[0]["count"] == 3, "the duplicate is not counted"
    assert ev["source"] == {"component": "edged", "host": "edge-c"} and ev["type"] == "Warning"
    assert ev["involvedObject"]["fieldPath"] == "spec.containers{c}"
    # another node may not report events of a pod bound elsewhere: dead-lettered, not recorded
    await store.create(NODES, {"metadata": {"name": "edge-d"}})
    await report(t + 5_000_000_000, reason="Forged", node="edge-d")
    await asyncio.sleep(1)
    evs, _ = await store.list(EVENTS, "default", field_selector="reason=Forged")
    assert evs == []


async def test_after_start_every_node_gets_a_full_grace_period(bus: Bus, store: ObjectStore, hub: Any) -> None:
    """A node recorded Ready long ago (the cloud was down meanwhile) is not declared NotReady
    the moment cloudhub starts: liveness runs from when this process observed the node, not
    from the heartbeat time stored in the object, so heartbeats get a whole grace period."""
    await store.create(NODES, {"metadata": {"name": "edge-e"}})

    def old_ready(n: dict[str, Any]) -> dict[str, Any]:
        import datetime as dt

        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        return logic.set_ready(n, "True", "EdgeReady", "edge node is posting heartbeats", long_ago, heartbeat=True)

    await store.mutate(NODES, None, "edge-e", old_ready)
    svc = build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub={"node_grace_period": GRACE, "lease_ttl": 2, "lifecycle_interval": 0.2})
    t0 = time.monotonic()
    await svc.start()
    try:
        await eventually(lambda: _is(store, "edge-e", "Unknown"), timeout=GRACE + 10, msg="NotReady once the grace period passed")
        assert time.monotonic() - t0 >= GRACE - 0.2, "not at once"
    finally:
        await svc.stop()


async def test_a_stalled_evaluator_gives_every_node_a_fresh_grace_period(bus: Bus, store: ObjectStore, cloudhub: Any) -> None:
    """The cloud stops (here: this whole process, cloudhub included, is frozen longer than
    the grace period): when it runs again, heartbeats have not been forwarded yet - the
    node must not flap NotReady meanwhile."""
    await store.create(NODES, {"metadata": {"name": "edge-f"}})
    beating = asyncio.Event()
    beating.set()

    async def beat() -> None:
        while True:
            await beating.wait()
            await heartbeat(bus, "edge-f")
            await asyncio.sleep(0.3)

    task = asyncio.create_task(beat())
    try:
        await eventually(lambda: _is(store, "edge-f", "True"), timeout=10, msg="edge-f Ready")
        await asyncio.sleep(1)
        before = logic.ready_condition(await store.get(NODES, None, "edge-f"))
        assert before is not None
        time.sleep(GRACE + 1.5)  # noqa: ASYNC251 - freeze the event loop: cloudhub cannot run
        beating.clear()
        await asyncio.sleep(1.0)  # the outbox has not drained yet: no heartbeat for a moment
        beating.set()
        await asyncio.sleep(GRACE + 1)
        after = logic.ready_condition(await store.get(NODES, None, "edge-f"))
        assert after is not None and after["status"] == "True"
        assert after["lastTransitionTime"] == before["lastTransitionTime"], "Ready never changed"
        events, _ = await store.list(EVENTS, "default", field_selector="reason=NodeNotReady")
        assert events == []
    finally:
        task.cancel()
