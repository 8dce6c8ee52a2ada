"""Supervisor.stop and clock.cancel_and_wait: every task ends, even one whose first
cancellation was lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgebus import clock
from edgebus.runtime.tasks import Supervisor


async def test_a_task_that_lost_its_cancel_is_cancelled_again() -> None:
    lost = []

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                if lost:
                    raise
                lost.append(1)  # as a wait_for racing its reply returns normally: go on waiting

    sup = Supervisor("svc")
    sup.start("loop", loop)
    await asyncio.sleep(0.01)
    task = sup._tasks["loop"]
    began = time.monotonic()
    await sup.stop(timeout=5.0, recancel=0.05)
    assert lost == [1]
    assert task.cancelled()
    assert time.monotonic() - began < 1.0


async def test_a_task_that_never_stops_is_given_up_after_the_timeout() -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass

    sup = Supervisor("svc")
    sup.start("stubborn", stubborn)
    await asyncio.sleep(0.01)
    task = sup._tasks["stubborn"]
    began = time.monotonic()
    await sup.stop(timeout=0.3, recancel=0.05)
    assert 0.25 < time.monotonic() - began < 1.0
    assert not task.done()
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_shielded_wait_outlasts_its_own_cancellation_and_raises_it_after() -> None:
    """The lease's wind-down: a leader stopped while its work is ending waits for the work."""
    ended = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.1)  # cleanup that takes a while
            ended.set()
            raise

    work = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(clock.cancel_and_wait({work}, shield=True, recancel=1.0))
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert ended.is_set() and work.cancelled()


async def test_an_unshielded_wait_stops_when_cancelled() -> None:
    work = asyncio.create_task(_swallow_one_cancel_then(0.5))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(clock.cancel_and_wait({work}, recancel=10))
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not work.done()  # the waiter went at once; the work is still winding down
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work


async def _swallow_one_cancel_then(seconds: float) -> None:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(seconds)
