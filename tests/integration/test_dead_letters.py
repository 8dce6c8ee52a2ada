"""Dead letters: terminated only once their copy is stored; one bad message never takes its
batch with it; only real failures count; each domain keeps its own rejects, bounded."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from contextlib import aclosing
from pathlib import Path
from typing import Any

from edgebus import names
from edgebus.bus import Bus, CaughtUp, DurableSpec, Message, Router, StreamSpec, consumer_state, ensure_stream, read_stream
from edgebus.bus.deadletter import EDGE_LIMITS, KEPT_PREFIX, dlq_stream
from edgebus.envelope import Envelope
from edgebus.errors import InvalidMessage, RetryLater
from edgebus.runtime import Service, ServiceSettings
from edgebus.testing.servers import start_leaf
from edgebus.testing.waiting import eventually

STREAM = "TESTS"
SPEC = DurableSpec(stream=STREAM, durable="worker", ack_wait=30.0, batch=50)


async def dead_letters(bus: Bus, domain: str | None = None) -> list[Any]:
    out = []
    async with aclosing(read_stream(bus, names.STREAM_DLQ, names.DLQ_FILTER, domain=domain, stop_when_caught_up=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            out.append(m)
    return out


def env(n: int, **extra: Any) -> Envelope:
    return Envelope.new(source="test", operation="update", content={"n": n, **extra})


async def _service(nats: dict[str, Any], router: Router[Any], *, node: str | None = None) -> Service[Any]:
    svc: Service[Any] = Service(router.service, ServiceSettings(node=node, nats=nats), router=router)
    svc.ctx = object()
    await svc.start()
    return svc


async def test_one_bad_message_does_not_poison_its_batch(hub, bus: Bus) -> None:
    await ensure_stream(bus, StreamSpec(STREAM, subjects=("tests.>",)))
    for n in range(20):  # all stored before the consumer exists: they come as one batch
        await bus.js_publish("tests.x", env(n, poison=n == 7), stream=STREAM)
    processed: Counter[int] = Counter()
    delivered: dict[int, int] = {}
    router: Router[Any] = Router("batcher")

    @router.durable_batch(SPEC, max_attempts=3)
    async def handle(msgs: list[Message], ctx: Any) -> None:
        for m in msgs:
            if m.env.content["poison"]:
                raise ValueError("cannot digest message 7")
        for m in msgs:
            processed[m.env.content["n"]] += 1
            delivered[m.env.content["n"]] = m.raw.num_delivered

    svc = await _service(hub.nats_settings(), router)
    try:
        dl = await eventually(lambda: _has(dead_letters(bus), 1), timeout=20, msg="the poison message dead-lettered")
        await eventually(lambda: len(processed) == 19, timeout=10, msg="the other 19 processed")
        st = await eventually(lambda: _settled(bus, "worker", 20), timeout=10, msg="every message settled")
        assert st.num_ack_pending == 0
        assert set(processed) == set(range(20)) - {7} and set(processed.values()) == {1}
        assert set(delivered.values()) == {1}, "the good messages of the batch were sent back (and counted as attempts)"
        assert len(dl) == 1 and Envelope.decode(dl[0].data).content["n"] == 7
        assert "gave up after 3 failed attempts" in dl[0].headers[names.HDR_ERROR]
        assert "cannot digest message 7" in dl[0].headers[names.HDR_ERROR]
    finally:
        await svc.stop()


async def test_only_real_failures_count_towards_max_attempts(hub, bus: Bus) -> None:
    """After an outage (RetryLater, many redeliveries) one crash does not dead-letter."""
    await ensure_stream(bus, StreamSpec(STREAM, subjects=("tests.>",)))
    await bus.js_publish("tests.x", env(1), stream=STREAM)
    calls: list[str] = []
    router: Router[Any] = Router("flaky")

    @router.durable(SPEC, max_attempts=3)
    async def handle(m: Message, ctx: Any) -> None:
        calls.append("")
        if len(calls) <= 8:
            raise RetryLater("dependency down", delay=0.02)
        if len(calls) <= 10:
            raise ValueError("crashed twice")

    svc = await _service(hub.nats_settings(), router)
    try:
        await eventually(lambda: _settled(bus, "worker", 1), timeout=20, msg="message processed")
        assert len(calls) == 11
        assert await dead_letters(bus) == []
    finally:
        await svc.stop()


async def test_a_reject_is_terminated_only_once_its_copy_is_stored(hub, bus: Bus) -> None:
    await ensure_stream(bus, StreamSpec(STREAM, subjects=("tests.>",)))
    # the domain's dead-letter stream exists but refuses every message (sealed)
    spec = dlq_stream(names.CLOUD_DOMAIN, EDGE_LIMITS)
    await ensure_stream(bus, spec)
    sealed = spec.to_config()
    sealed.sealed = True
    await bus.js().update_stream(sealed)
    seen: list[int] = []
    router: Router[Any] = Router("rejecter")

    @router.durable(SPEC)
    async def handle(m: Message, ctx: Any) -> None:
        seen.append(m.seq)
        raise InvalidMessage("this message is wrong")

    await bus.js_publish("tests.x", env(1), stream=STREAM)
    svc = await _service(hub.nats_settings(), router)
    try:
        await eventually(lambda: len(seen) >= 2, timeout=20, msg="the reject comes back while its copy cannot be stored")
        st = await consumer_state(bus, STREAM, "worker")
        assert st.ack_floor_stream_seq == 0, "terminated although its dead-letter copy was not stored"
        await bus.js().delete_stream(names.STREAM_DLQ)  # the stream works again (re-created)
        dl = await eventually(lambda: _has(dead_letters(bus), 1), timeout=60, msg="copy stored")  # at its next redelivery (back-off)
        await eventually(lambda: _settled(bus, "worker", 1), timeout=30, msg="terminated after the copy")
        assert len(dl) == 1 and dl[0].headers[names.HDR_ERROR] == "this message is wrong"
        assert dl[0].headers["Edgebus-Subject"] == "tests.x"
    finally:
        await svc.stop()


async def test_dead_letters_stay_in_their_domain_bounded(cluster, tmp_path: Path) -> None:
    leaves = {n: start_leaf(tmp_path, cluster.hub, n) for n in ("edge-1", "edge-2")}
    cluster.leaves.update(leaves)
    buses = {n: leaf.bus(f"test-{n}") for n, leaf in leaves.items()}
    cloud = cluster.hub.bus("test-cloud")
    svcs = []
    try:
        for b in (*buses.values(), cloud):
            await b.connect(retry_for=10)
        for n in leaves:
            router: Router[Any] = Router("rejecter")

            @router.durable(SPEC)
            async def handle(m: Message, ctx: Any) -> None:
                raise InvalidMessage("no thanks")

            # each domain's own subjects: a subject captured on both sides is stored twice
            await ensure_stream(buses[n], StreamSpec(STREAM, subjects=(f"tests.{n}.>",)))
            svcs.append(await _service(leaves[n].nats_settings(), router, node=n))
        cloud_router: Router[Any] = Router("rejecter")

        @cloud_router.durable(SPEC)
        async def cloud_handle(m: Message, ctx: Any) -> None:
            raise InvalidMessage("not in the cloud either")

        await ensure_stream(cloud, StreamSpec(STREAM, subjects=("tests.cloud.>",)))
        svcs.append(await _service(cluster.hub.nats_settings(), cloud_router))
        big = os.urandom(7 << 20)  # garbage, 7 MB, not msgpack
        await buses["edge-1"].js_publish("tests.edge-1.a", env(1), stream=STREAM)
        await buses["edge-1"].js_publish("tests.edge-1.big", big, stream=STREAM)
        await buses["edge-2"].js_publish("tests.edge-2.b", env(2), stream=STREAM)
        await cloud.js_publish("tests.cloud.c", env(3), stream=STREAM)
        e1 = await eventually(lambda: _has(dead_letters(buses["edge-1"]), 2), timeout=20, msg="edge-1's rejects")
        e2 = await eventually(lambda: _has(dead_letters(buses["edge-2"]), 1), timeout=20, msg="edge-2's rejects")
        c = await eventually(lambda: _has(dead_letters(cloud), 1), timeout=20, msg="the cloud's reject")
        for b in buses.values():
            await eventually(lambda b=b: _settled(b, "worker", 0, stream_last=True), timeout=10, msg="settled")
        assert sorted(m.subject for m in e1) == ["edgebus.dlq.edge-1.rejecter"] * 2
        assert [m.headers["Edgebus-Subject"] for m in e2] == ["tests.edge-2.b"]
        assert [m.headers["Edgebus-Subject"] for m in c] == ["tests.cloud.c"], "a domain stores only its own rejects"
        copy = next(m for m in e1 if m.headers["Edgebus-Subject"] == "tests.edge-1.big")
        assert copy.data == big[:KEPT_PREFIX]
        assert copy.headers["Edgebus-Payload-Sha256"] == hashlib.sha256(big).hexdigest()
        assert copy.headers["Edgebus-Payload-Bytes"] == str(len(big))
        assert "not msgpack" in copy.headers[names.HDR_ERROR]
        info = await buses["edge-1"].js().stream_info(names.STREAM_DLQ)
        assert info.state.bytes < 64 << 10
        assert info.config.max_bytes == EDGE_LIMITS.max_bytes and info.config.max_age == EDGE_LIMITS.max_age
        assert info.config.subjects == [names.dlq_filter("edge-1")]
    finally:
        for s in svcs:
            await s.stop()
        for b in (*buses.values(), cloud):
            await b.close()


async def _has(aw, n: int):  # type: ignore[no-untyped-def]
    got = await aw
    return got if len(got) >= n else None


async def _settled(bus: Bus, durable: str, n: int, *, stream_last: bool = False):  # type: ignore[no-untyped-def]
    st = await consumer_state(bus, STREAM, durable)
    if stream_last:
        n = (await bus.js().stream_info(STREAM)).state.last_seq
    return st if st.ack_floor_stream_seq >= n and st.num_ack_pending == 0 else None
