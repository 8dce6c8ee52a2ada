"""Polling helpers for tests: wait for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(
    fn: Callable[[], Any | Awaitable[Any]], *, timeout: float = 10.0, interval: float = 0.05, msg: str = "condition"
) -> Any:
    """Await until ``fn()`` (sync or async) returns a truthy value; return that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        try:
            res = fn()
            if asyncio.iscoroutine(res):
                res = await res
        except Exception as exc:  # keep polling through transient errors
            res, last = None, exc
        else:
            last = res
        if res:
            return res
        await asyncio.sleep(interval)
    raise AssertionError(f"{msg} not reached within {timeout}s (last: {last!r})")


def wait_until(fn: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05, msg: str = "condition") -> Any:
    """Blocking variant of :func:`eventually` for synchronous tests."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            res = fn()
        except Exception as exc:
            res, last = None, exc
        else:
            last = res
        if res:
            return res
        time.sleep(interval)
    raise AssertionError(f"{msg} not reached within {timeout}s (last: {last!r})")
