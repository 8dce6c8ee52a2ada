"""Partition an edge node (TCP proxy in its leaf link), change both sides, heal; then
restart the cloud nats-server. Latest-wins downstream, exactly-once upstream."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import aclosing

import pytest

from edgebus import names
from edgebus.bus import CaughtUp, read_stream
from edgebus.envelope import Envelope
from edgebus.objects import CONFIGMAPS, PODS
from edgebus.testing.waiting import eventually

from .conftest import BOTH_MODES, RunningLab, restart_process

pytestmark = pytest.mark.e2e

N_CM, ROUNDS, N_VICTIMS, N_UP = 20, 10, 10, 500


def cm(i: int, v: str) -> dict:
    return {"metadata": {"name": f"cm-{i:02d}", "namespace": "default"}, "data": {"v": v}}


def pod(name: str, cms: int = 0) -> dict:
    spec: dict = {"nodeName": "edge-1", "containers": [{"name": "c", "image": "busybox"}]}
    if cms:
        spec["volumes"] = [{"name": f"v{i}", "configMap": {"name": f"cm-{i:02d}"}} for i in range(cms)]
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


#: what every node holds besides its pods and their sources: the RBAC objects (for its
#: metaserver) and its own Node object
NODE_HELD = ("/rbac.authorization.k8s.io/", "/core/v1/nodes/")


async def edge_objects(rl: RunningLab) -> dict[str, dict]:
    """The node's objects, without the cluster's RBAC objects and its own Node, which every
    node holds."""
    return {i["key"]: i for i in (await rl.meta.list())["items"] if not i["key"].startswith(NODE_HELD)}


async def update_cm(rl: RunningLab, i: int, v: str) -> None:
    cur = await rl.store.get(CONFIGMAPS, "default", f"cm-{i:02d}")
    cur["data"] = {"v": v}
    await rl.store.update(CONFIGMAPS, cur)


async def up_events(rl: RunningLab) -> Counter[int]:
    """Every outbox event the cloud's EDGEBUS_UP holds for edge-1, by its payload number."""
    seen: Counter[int] = Counter()
    async with aclosing(read_stream(rl.cloud, names.STREAM_UP, names.up_subject("edge-1", names.UP_EVENT), stop_when_caught_up=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            seen[Envelope.decode(m.data).content["n"]] += 1
    return seen


async def link_state(rl: RunningLab) -> str:
    env = Envelope.new(source="test", operation="query", content={})
    return (await rl.edge.call(names.edgehub_subject("edge-1", "state"), env)).content["link"]


@BOTH_MODES
async def test_partition_then_cloud_restart(proxied_lab: RunningLab) -> None:
    await partition_then_cloud_restart(proxied_lab)


async def partition_then_cloud_restart(rl: RunningLab) -> None:
    """The scenario (also run by the memory-limit test)."""
    assert rl.proxy is not None
    for i in range(N_CM):
        await rl.store.create(CONFIGMAPS, cm(i, "init"))
    await rl.store.create(PODS, pod("holder", N_CM))
    for i in range(N_VICTIMS):
        await rl.store.create(PODS, pod(f"victim-{i}"))
    await eventually(lambda: _count(rl, N_CM + 1 + N_VICTIMS), timeout=15, msg="initial sync")

    # -- partition ----------------------------------------------------------------------
    rl.proxy.cut()
    await eventually(lambda: _is(link_state(rl), "down"), timeout=15, msg="edgehub sees the link down")
    for r in range(ROUNDS):
        for i in range(N_CM):
            await update_cm(rl, i, f"r{r}")
    for i in range(N_VICTIMS):
        await rl.store.delete(PODS, "default", f"victim-{i}", grace_period_seconds=0)
    for n in range(N_UP):
        env = Envelope.new(source="test", operation="event", resource="events", content={"n": n, "time": time.time_ns()})
        await rl.edge.js_publish(names.outbox_subject("edge-1", names.UP_EVENT), env, stream=names.STREAM_EDGE_UP)
    objs = await edge_objects(rl)  # offline: the edge still serves its (old) state
    assert objs["/core/v1/configmaps/default/cm-00"]["object"]["data"] == {"v": "init"}
    assert len(objs) == N_CM + 1 + N_VICTIMS

    # -- heal: latest version of each object, deletes applied, upstream exactly once --------
    healed = time.monotonic()
    rl.proxy.heal()

    async def converged() -> bool:
        o = await edge_objects(rl)
        return len(o) == N_CM + 1 and all(o[f"/core/v1/configmaps/default/cm-{i:02d}"]["object"]["data"] == {"v": f"r{ROUNDS - 1}"} for i in range(N_CM))

    await eventually(converged, timeout=30, msg="edge converged after heal")
    heal_s = time.monotonic() - healed
    objs = await edge_objects(rl)
    assert not any("victim" in k for k in objs)
    for i in range(N_CM):
        # 1 initial + at most 1 for the whole outage (latest wins), not ROUNDS
        assert objs[f"/core/v1/configmaps/default/cm-{i:02d}"]["updates"] <= 2
    seen = await eventually(lambda: _all_up(rl, N_UP), timeout=30, msg="upstream delivered")
    assert sorted(seen) == list(range(N_UP)) and set(seen.values()) == {1}, "each upstream message exactly once"

    # -- restart the cloud nats-server: the edge must not stay stale ------------------------
    await restart_process(rl.lab, "cloud/nats")
    restarted = time.monotonic()
    await eventually(lambda: _write(rl, 0, "after-restart"), timeout=20, msg="cloud writable again")
    await eventually(lambda: _has(rl, 0, "after-restart"), timeout=20, msg="edge got the post-restart change")
    stale_s = time.monotonic() - restarted
    for n in range(N_UP, N_UP + 20):
        env = Envelope.new(source="test", operation="event", resource="events", content={"n": n, "time": time.time_ns()})
        await rl.edge.js_publish(names.outbox_subject("edge-1", names.UP_EVENT), env, stream=names.STREAM_EDGE_UP)
    seen = await eventually(lambda: _all_up(rl, N_UP + 20), timeout=20, msg="upstream after restart")
    assert set(seen.values()) == {1}
    # downstream changes only: the node's own pod status reports (edged) are logged too
    changes = [c for c in (await rl.meta.changes(0, 10_000))["changes"] if c["type"] != "STATUS"]
    pairs = [(c["key"], c["sync"]) for c in changes]
    assert len(pairs) == len(set(pairs)), "no change applied twice"
    print(f"\nheal->converged {heal_s:.2f}s; cloud restart->edge updated {stale_s:.2f}s")
    assert stale_s < 10


async def _count(rl: RunningLab, n: int) -> bool:
    return len(await edge_objects(rl)) == n


async def _is(aw, want: str) -> bool:
    return (await aw) == want


async def _write(rl: RunningLab, i: int, v: str) -> bool:
    await update_cm(rl, i, v)
    return True


async def _has(rl: RunningLab, i: int, v: str) -> bool:
    o = await edge_objects(rl)
    return o[f"/core/v1/configmaps/default/cm-{i:02d}"]["object"]["data"] == {"v": v}


async def _all_up(rl: RunningLab, n: int) -> Counter[int] | None:
    seen = await up_events(rl)
    return seen if len(seen) >= n else None


__all__ = ["asyncio"]
