"""The wall clock edge services stamp their reports with.

It is ``time.time_ns()`` plus an offset, so a test can make an edge's clock jump (``jump``)
while services run in its process; nothing in production sets the offset. Nothing that
decides liveness or order in the cloud trusts these stamps: the cloud judges heartbeats by
when it stored them, and orders a node's reports by its outbox sequence
(:mod:`edgebus.order`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

_offset_ns = 0


def now_ns() -> int:
    return time.time_ns() + _offset_ns


def now_ms() -> int:
    return now_ns() // 1_000_000


def now() -> float:
    return now_ns() / 1e9


def jump(seconds: float) -> None:
    """Move the clock by ``seconds`` (negative: back)."""
    global _offset_ns
    _offset_ns += int(seconds * 1e9)


def reset() -> None:
    global _offset_ns
    _offset_ns = 0


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` passes (None: no limit); True when set.

    Unlike ``asyncio.wait_for(event.wait(), timeout)`` on Python 3.11, a cancellation that
    arrives as the event is set is never lost (``wait_for`` may return the result instead),
    so a loop that waits here for a wake-up always stops when its task is cancelled."""
    if timeout is not None and timeout <= 0:
        await asyncio.sleep(0)  # a loop waiting here still gives the others their turn
        return event.is_set()
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


def raise_lost_cancel() -> None:
    """Raise the current task's pending cancellation, if one was lost. Python 3.11's
    ``asyncio.wait_for`` returns normally when its task is cancelled as the awaited thing
    completes, and nats-py waits for every reply and fetch that way: a loop calling it
    calls this after each such wait, so it stops instead of waiting again."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: set[asyncio.Task[Any]], *, timeout: float | None = None, recancel: float = 1.0, shield: bool = False) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` and wait until they have ended or ``timeout`` passes (None: no
    limit); return those still running. One still running after ``recancel`` seconds is
    cancelled again: a library waiting with ``asyncio.wait_for`` (nats-py's requests and
    fetches, on Python 3.11) can lose a cancellation that arrives as its reply does, and then
    waits on in its next call as if nothing had happened. With ``shield``, a cancellation of
    the waiter itself does not stop the wait: it is raised once the tasks have ended."""
    pending = {t for t in tasks if not t.done()}
    deadline = None if timeout is None else time.monotonic() + timeout
    cancelled = False
    recancel_at = time.monotonic()
    while pending:
        now = time.monotonic()
        if now >= recancel_at:
            for t in pending:
                t.cancel()
            recancel_at = now + recancel
        step = recancel_at - now if deadline is None else min(recancel_at, deadline) - now
        if deadline is not None and deadline <= now:
            break
        try:
            _, pending = await asyncio.wait(pending, timeout=step)
        except asyncio.CancelledError:
            if not shield:
                raise
            cancelled = True
            pending = {t for t in pending if not t.done()}
    if cancelled:
        raise asyncio.CancelledError
    return pending


async def within(aw: Awaitable[T], timeout: float | None) -> T:
    """``await aw`` limited to ``timeout`` seconds (TimeoutError after that); as with
    :func:`wait_set`, a cancellation that arrives as ``aw`` completes is never lost."""
    async with asyncio.timeout(timeout):
        return await aw
