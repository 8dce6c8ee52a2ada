"""A node offline for longer than every cloud-side retention and de-duplication window:
thousands of upstream messages reach the cloud each exactly once, in order per object. The
resume point is the node's cursor in EDGEBUS_UP (stored atomically with every forwarded
message, never expiring), not the last message the cloud still holds."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from contextlib import aclosing
from pathlib import Path

import pytest

from edgebus import names
from edgebus.bus import Bus, BusMsg, CaughtUp, read_stream
from edgebus.envelope import Envelope
from edgebus.names import ObjectRef
from edgebus.testing.services import build_service
from edgebus.testing.servers import start_leaf
from edgebus.testing.waiting import eventually

MAX_AGE, DUP_WINDOW = 3.0, 1.0
N_BEFORE, N_OUTAGE, OBJECTS = 100, 3000, 10


def event(k: int) -> tuple[str, Envelope]:
    obj = k % OBJECTS
    subject = names.outbox_subject("edge-1", names.UP_EVENT, ObjectRef("events", "default", f"o{obj}"))
    return subject, Envelope.new(source="test", operation="event", resource="events", content={"obj": obj, "n": k, "time": time.time_ns()})


@pytest.mark.timeout(420)
async def test_exactly_once_after_an_outage_longer_than_every_window(cluster, tmp_path: Path) -> None:
    leaf = start_leaf(tmp_path, cluster.hub, "edge-1", via_proxy=True)
    cluster.leaves["edge-1"] = leaf
    assert leaf.proxy is not None
    svcs = [
        build_service("cloudhub", nats=cluster.hub.nats_settings("cloudhub"), cloudhub={"node_grace_period": 5, "up_max_age": MAX_AGE, "up_duplicate_window": DUP_WINDOW, "auto_register_nodes": True}),
        build_service("edgehub", node="edge-1", nats={**leaf.nats_settings("edgehub"), "ping_interval": 1}, edgehub={"heartbeat_interval": 0.5, "status_interval": 1, "status_report_interval": 1}),
    ]
    for s in svcs:
        await s.start()
    cloud = cluster.hub.bus("test-cloud")
    edge = leaf.bus("test-edge")
    await cloud.connect(retry_for=5)
    await edge.connect(retry_for=5)
    got: list[BusMsg] = []

    async def collect() -> None:  # what the cloud stores, read as it arrives (it ages out fast)
        async with aclosing(read_stream(cloud, names.STREAM_UP, "edgebus.up.edge-1.event.>")) as it:
            async for m in it:
                if not isinstance(m, CaughtUp):
                    got.append(m)

    reader = asyncio.create_task(collect())
    try:
        info = await eventually(lambda: cloud.js().stream_info(names.STREAM_UP), timeout=15, msg="EDGEBUS_UP")
        assert info.config.max_age == MAX_AGE
        for k in range(N_BEFORE):
            s, env = event(k)
            await edge.js_publish(s, env, stream=names.STREAM_EDGE_UP)
        await eventually(lambda: len(got) >= N_BEFORE, timeout=20, msg="forwarded before the outage")

        leaf.proxy.cut()
        await eventually(lambda: _link(edge, "down"), timeout=20, msg="link down")
        for k in range(N_BEFORE, N_BEFORE + N_OUTAGE):
            s, env = event(k)
            await edge.js_publish(s, env, stream=names.STREAM_EDGE_UP)
        # longer than the cloud keeps anything of this node, and than its de-duplication window
        await eventually(lambda: _nothing_but_the_cursor(cloud), timeout=MAX_AGE + 10, msg="the node's messages aged out in the cloud")
        await asyncio.sleep(DUP_WINDOW + 0.5)

        leaf.proxy.heal()
        # one atomic batch (message + cursor) per message, each acknowledged before the next:
        # 3,000 of them take a while on a loaded machine
        await eventually(lambda: _forwarded_all(edge), timeout=300, msg="outbox forwarded after the outage")
        await asyncio.sleep(1.0)  # anything sent twice would be in by now
        numbers = [Envelope.decode(m.data).content["n"] for m in got]
        counts = Counter(numbers)
        assert sorted(counts) == list(range(N_BEFORE + N_OUTAGE)), "every message arrived"
        dup = {n: c for n, c in counts.items() if c > 1}
        assert not dup, f"{len(dup)} messages arrived more than once (e.g. {sorted(dup)[:5]})"
        per_object: dict[int, list[int]] = defaultdict(list)
        for n in numbers:
            per_object[n % OBJECTS].append(n)
        assert all(v == sorted(v) for v in per_object.values()), "in order per object"
        info = await cloud.js().stream_info(names.STREAM_UP, subjects_filter=names.up_cursor_subject("edge-1"))
        assert info.state.subjects == {names.up_cursor_subject("edge-1"): 1}, "one cursor per node, rolled up"
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await cloud.close()
        await edge.close()
        for s in reversed(svcs):
            await s.stop()


async def _link(edge: Bus, want: str) -> bool:
    env = Envelope.new(source="test", operation="query", content={})
    return (await edge.call(names.edgehub_subject("edge-1", "state"), env)).content["link"] == want


async def _nothing_but_the_cursor(cloud: Bus) -> bool:
    info = await cloud.js().stream_info(names.STREAM_UP, subjects_filter=names.up_filter("edge-1"))
    return set(info.state.subjects or {}) <= {names.up_cursor_subject("edge-1")}


async def _forwarded_all(edge: Bus) -> bool:
    env = Envelope.new(source="test", operation="query", content={})
    st = (await edge.call(names.edgehub_subject("edge-1", "state"), env)).content
    return st["link"] == "up" and st["outbox"]["backlog"] == 0 and st["outbox"]["lastSeq"] >= N_BEFORE + N_OUTAGE


async def test_forwarding_to_a_cloud_whose_stream_predates_cursors(cluster, tmp_path: Path) -> None:
    """A cloud whose EDGEBUS_UP takes no atomic batches (an older cloudhub owns it) still gets
    everything, once: the forwarder sends one message at a time and resumes from the last."""
    from edgebus.bus import StreamSpec, ensure_stream

    leaf = start_leaf(tmp_path, cluster.hub, "edge-1")
    cluster.leaves["edge-1"] = leaf
    cloud = cluster.hub.bus("test-cloud")
    edge = leaf.bus("test-edge")
    await cloud.connect(retry_for=5)
    await edge.connect(retry_for=5)
    await ensure_stream(cloud, StreamSpec(names.STREAM_UP, subjects=(names.up_filter(),), max_age=7 * 86400.0, duplicate_window=600.0))
    hub = build_service("edgehub", node="edge-1", nats=leaf.nats_settings("edgehub"), edgehub={"heartbeat_interval": 60})
    await hub.start()
    try:
        for k in range(20):
            s, env = event(k)
            await edge.js_publish(s, env, stream=names.STREAM_EDGE_UP)
        got = await eventually(lambda: _events(cloud, 20), timeout=20, msg="forwarded without atomic batches")
        assert sorted(got) == list(range(20))
        info = await cloud.js().stream_info(names.STREAM_UP)
        assert not info.config.allow_atomic, "edgehub does not change the cloud's stream"
    finally:
        await hub.stop()
        await cloud.close()
        await edge.close()


async def _events(cloud: Bus, n: int) -> list[int] | None:
    out = []
    async with aclosing(read_stream(cloud, names.STREAM_UP, "edgebus.up.edge-1.event.>", stop_when_caught_up=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            out.append(Envelope.decode(m.data).content["n"])
    return out if len(out) >= n else None


async def test_cloudhub_brings_an_older_up_stream_to_cursors(bus: Bus) -> None:
    """An EDGEBUS_UP made before cursors is updated in place (messages kept) by its owner."""
    from edgebus import topology
    from edgebus.bus import StreamSpec, ensure_stream

    await ensure_stream(bus, StreamSpec(names.STREAM_UP, subjects=(names.up_filter(),), max_age=7 * 86400.0, duplicate_window=600.0))
    await bus.js_publish(names.up_subject("edge-1", names.UP_HEARTBEAT), b"old", stream=names.STREAM_UP)
    await topology.ensure_cloud_streams(bus)  # a non-owner: leaves it as it is
    assert not (await bus.js().stream_info(names.STREAM_UP)).config.allow_atomic
    await topology.ensure_cloud_streams(bus, up=topology.cloud_up(max_age=3 * 86400.0))  # cloudhub
    info = await bus.js().stream_info(names.STREAM_UP)
    assert info.config.allow_atomic and info.config.allow_msg_ttl and info.config.allow_rollup_hdrs
    assert info.config.max_age == 3 * 86400.0 and info.state.messages == 1
