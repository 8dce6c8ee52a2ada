"""clock.wait_set: an interruptible wait for a wake-up that never loses a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from edgebus import clock


async def test_a_cancel_that_arrives_with_the_wake_up_stops_the_waiter() -> None:
    # asyncio.wait_for(event.wait(), t) returns normally here on Python 3.11: a loop that
    # waits for wake-ups that way can outlive the cancel of its task
    ev = asyncio.Event()
    waiter = asyncio.create_task(clock.wait_set(ev, 10.0))
    await asyncio.sleep(0.01)
    ev.set()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_set_timeout_and_no_timeout() -> None:
    ev = asyncio.Event()
    assert await clock.wait_set(ev, 0.05) is False
    assert await clock.wait_set(ev, 0) is False
    asyncio.get_running_loop().call_later(0.02, ev.set)
    assert await clock.wait_set(ev, None) is True
    assert await clock.wait_set(ev, 0) is True


async def test_a_zero_timeout_still_yields_to_the_loop() -> None:
    ran = []
    asyncio.get_running_loop().call_soon(ran.append, 1)
    await clock.wait_set(asyncio.Event(), 0.0)
    assert ran == [1]


async def test_within_limits_and_never_loses_a_cancel() -> None:
    with pytest.raises(TimeoutError):
        await clock.within(asyncio.sleep(1), 0.02)
    assert await clock.within(asyncio.sleep(0, "x"), 1.0) == "x"
    done = asyncio.Event()

    async def work() -> str:
        await done.wait()
        return "done"

    async def caller() -> str:
        return await clock.within(work(), 10.0)

    t = asyncio.create_task(caller())
    await asyncio.sleep(0.01)
    done.set()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t


async def test_a_cancel_lost_in_wait_for_is_raised_at_the_next_check() -> None:
    done = asyncio.Event()
    after: list[str] = []

    async def caller() -> None:
        await asyncio.wait_for(done.wait(), 10.0)  # as nats-py waits for a reply
        after.append("wait_for returned")
        clock.raise_lost_cancel()
        after.append("went on")

    t = asyncio.create_task(caller())
    await asyncio.sleep(0.01)
    done.set()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    # on Python 3.11 wait_for swallowed the cancel and the check raised it; later Pythons
    # raise it from wait_for itself: either way the caller never goes on
    assert "went on" not in after


async def test_no_pending_cancel_no_raise() -> None:
    clock.raise_lost_cancel()
