"""Leader election over a KV lease: one holder at a time, fast hand-over."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgebus.bus import Bus, WrongRevision
from edgebus.bus.lease import Lease
from edgebus.testing.waiting import eventually


async def test_one_leader_and_failover(hub) -> None:
    buses = [hub.bus(f"r{i}") for i in range(3)]
    for b in buses:
        await b.connect(retry_for=5)
    leases = [Lease(b, "role", ttl=1.5, identity=f"r{i}") for i, b in enumerate(buses)]
    tasks = [asyncio.create_task(lease.run()) for lease in leases]
    try:
        first = await eventually(lambda: [x for x in leases if x.is_leader], timeout=10, msg="a leader")
        await asyncio.sleep(1.0)  # renewals keep the same holder, and only one
        assert [x for x in leases if x.is_leader] == first and len(first) == 1

        # a clean shutdown releases at once
        i = leases.index(first[0])
        t0 = time.monotonic()
        tasks[i].cancel()
        await asyncio.gather(tasks[i], return_exceptions=True)
        second = await eventually(lambda: [x for x in leases if x.is_leader], timeout=10, msg="a new leader")
        assert second[0] is not first[0] and len(second) == 1
        assert time.monotonic() - t0 < 1.5

        # a dead holder (connection gone, no release) is replaced once its lease expires
        j = leases.index(second[0])
        tasks[j].cancel()
        leases[j].revision = None  # die without releasing
        leases[j].release = _noop  # type: ignore[method-assign]
        await buses[j].close()
        t1 = time.monotonic()
        third = await eventually(lambda: [x for k, x in enumerate(leases) if x.is_leader and k not in (i, j)], timeout=10, msg="leader after a crash")
        assert len(third) == 1 and time.monotonic() - t1 < 1.5 * 3
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for b in buses:
            await b.close()


async def _noop() -> None:
    return None


async def test_work_runs_only_while_leader(hub) -> None:
    bus = hub.bus("w")
    await bus.connect(retry_for=5)
    lease = Lease(bus, "worker", ttl=1.5)
    runs = []

    async def work() -> None:
        runs.append("start")
        try:
            await asyncio.sleep(3600)
        finally:
            runs.append("stop")

    lt = asyncio.create_task(lease.run())
    wt = asyncio.create_task(lease.while_leader(work))
    try:
        await eventually(lambda: runs == ["start"], msg="work started as leader")
        lease._step_down()  # as when a renewal fails
        await eventually(lambda: runs == ["start", "stop"], msg="work cancelled on lost lease")
    finally:
        for t in (wt, lt):
            t.cancel()
        await asyncio.gather(wt, lt, return_exceptions=True)
        await bus.close()


async def test_cancelling_while_stepping_down_is_not_swallowed(hub) -> None:
    """A service stopping right as it loses its lease must stop, not wait for leadership."""
    bus = hub.bus("c")
    await bus.connect(retry_for=5)
    lease = Lease(bus, "c", ttl=1.5)

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.3)  # cleanup that takes a moment

    lt = asyncio.create_task(lease.run())
    wt = asyncio.create_task(lease.while_leader(slow_to_stop))
    try:
        await eventually(lambda: lease.is_leader, msg="leader")
        await asyncio.sleep(0.1)
        lease._step_down()
        await asyncio.sleep(0.05)  # while_leader now awaits the work's cleanup
        wt.cancel()
        done, _ = await asyncio.wait({wt}, timeout=2)
        assert wt in done and wt.cancelled()
    finally:
        for t in (wt, lt):
            t.cancel()
        await asyncio.wait({wt, lt}, timeout=2)
        await bus.close()


@pytest.mark.timeout(300)
async def test_a_partitioned_leader_stops_before_the_lease_passes_and_its_late_writes_are_refused(hub) -> None:
    """The leader's link freezes (alive, but nothing gets through): it stops acting within
    its renew deadline, before the lease can pass; a standby takes over and raises its fence;
    when the link thaws, the writes the old leader had in flight reach the server - and are
    refused, so they cannot overwrite the new leader's."""
    from edgebus import names, topology
    from edgebus.bus import ensure_stream, get_last
    from edgebus.envelope import Envelope
    from edgebus.testing.proxy import TcpProxy

    proxy = TcpProxy("127.0.0.1", hub.server.config.port)
    proxy.start()
    a = Bus(f"nats://127.0.0.1:{proxy.port}", name="a", ping_interval=60, request_timeout=5, auth=hub.auth())
    b = hub.bus("b", request_timeout=5)
    for x in (a, b):
        await x.connect(retry_for=5)
    await ensure_stream(b, topology.cloud_down())
    subject = names.down_subject("n1", "configmaps", "default", "c")
    fence_subject = names.down_fence_subject("role")
    leases = {n: Lease(bus, "role", ttl=3.0, identity=n) for n, bus in (("a", a), ("b", b))}
    fences = {n: lease.fence(names.STREAM_DOWN, fence_subject) for n, lease in leases.items()}
    acted: dict[str, list[float]] = {"a": [], "b": []}
    refused: list[str] = []
    stopped: dict[str, float] = {}

    async def publish(n: str) -> None:
        env = Envelope.new(source=n, operation="update", resource="configmaps", content={"by": n})
        try:
            await (a if n == "a" else b).js_publish(subject, env, headers=fences[n].headers(), stream=names.STREAM_DOWN, timeout=30)
        except WrongRevision:
            refused.append(n)

    def work(n: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            pending = set()
            try:
                while True:
                    acted[n].append(time.monotonic())
                    t = asyncio.create_task(publish(n))  # writes in flight, as a controller keeps them
                    pending.add(t)
                    t.add_done_callback(pending.discard)
                    await asyncio.sleep(0.1)
            finally:
                stopped[n] = time.monotonic()

        return run

    tasks = [asyncio.create_task(leases["a"].run()), asyncio.create_task(leases["a"].while_leader(work("a")))]
    try:
        await eventually(lambda: len(acted["a"]) > 3, timeout=10, msg="a leads")
        tasks += [asyncio.create_task(leases["b"].run()), asyncio.create_task(leases["b"].while_leader(work("b")))]
        await asyncio.sleep(1.5)
        assert not acted["b"], "one leader at a time"
        proxy.freeze()
        frozen = time.monotonic()
        await eventually(lambda: acted["b"], timeout=15, msg="b takes over")
        b_first = acted["b"][0]
        assert "a" in stopped and stopped["a"] < b_first, "the partitioned leader was still acting when the lease passed"
        assert stopped["a"] - frozen < 3.0 / 2 + 0.5, "stopped within its renew deadline"
        assert any(t > frozen for t in acted["a"]), "a had writes in flight while frozen"
        await eventually(lambda: _last_by(b, subject, "b"), timeout=10, msg="b's write stored")
        proxy.thaw()  # a's held-back writes reach the server now
        await eventually(lambda: "a" in refused, timeout=20, msg="a's late writes answered")
        await asyncio.sleep(1.0)
        assert await _last_by(b, subject, "b"), "a late write of the old leader overwrote the new leader's"
        last_fence = await get_last(b, names.STREAM_DOWN, fence_subject)
        assert last_fence is not None and int(last_fence.headers["Edgebus-Lease-Epoch"]) == leases["b"].epoch > 0
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proxy.close()
        for x in (a, b):
            await x.close()


async def _last_by(bus: Bus, subject: str, who: str) -> bool:
    from edgebus.bus import get_last
    from edgebus.envelope import Envelope

    m = await get_last(bus, "EDGEBUS_DOWN", subject)
    return m is not None and Envelope.decode(m.data).content["by"] == who


async def test_each_role_keeps_its_own_ttl_whoever_made_the_bucket(hub) -> None:
    """The bucket made by a holder with a 6 s lease does not shorten nor lengthen another's."""
    bus = hub.bus("t")
    await bus.connect(retry_for=5)
    short, long_ = Lease(bus, "short", ttl=1.5, identity="s"), Lease(bus, "long", ttl=6.0, identity="l")
    try:
        await long_._ensure_bucket()  # the long lease's holder comes first
        await long_._try()
        await short._try()
        assert long_.is_leader and short.is_leader
        short.revision = None  # both holders die without releasing
        long_.revision = None
        t0 = time.monotonic()
        other = Lease(bus, "short", ttl=1.5, identity="s2")
        await eventually(lambda: _acquire(other), timeout=10, interval=0.1, msg="short lease free again")
        assert time.monotonic() - t0 < 4.0, "the short lease lasted the bucket creator's TTL"
        assert not await _acquire(Lease(bus, "long", ttl=6.0, identity="l2")), "the long lease expired early"
    finally:
        await bus.close()


async def _acquire(lease: Lease) -> bool:
    await lease._try()
    return lease.is_leader
