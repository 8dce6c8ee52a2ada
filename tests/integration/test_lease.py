"""Leader election over a KV lease: one holder at a time, fast hand-over."""

from __future__ import annotations

import asyncio
import time

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
