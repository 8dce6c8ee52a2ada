"""Fail a test that leaks asyncio tasks (as kopf's test suite does).

A task a test (or its fixtures) started must be finished by the end of its teardown: a
task left pending is a service that did not stop, a watch nobody closes, a loop that keeps
running into the next test. :func:`leaked_tasks` gives the tasks still pending a short
grace to finish (a task cancelled in a teardown may need a few loop turns), then returns
the rest; the conftests' autouse fixture cancels them and fails the test with their names
and where each is suspended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def leaked_tasks(before: Iterable[asyncio.Task[object]], *, grace: float = 2.0) -> list[asyncio.Task[object]]:
    """The tasks of the running loop that were not in ``before``, are not the current
    task, and are still pending after ``grace`` seconds."""
    known = set(before)
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while True:
        pending = [t for t in asyncio.all_tasks() if t is not me and t not in known and not t.done()]
        if not pending or loop.time() >= deadline:
            return pending
        await asyncio.wait(pending, timeout=min(0.05, max(deadline - loop.time(), 0)))


def describe(tasks: Iterable[asyncio.Task[object]]) -> str:
    """One line per task: its name and the frame it waits in."""
    lines = []
    for t in sorted(tasks, key=lambda t: t.get_name()):
        frames = t.get_stack(limit=1)
        where = f"{frames[0].f_code.co_filename}:{frames[0].f_lineno} in {frames[0].f_code.co_name}" if frames else "?"
        lines.append(f"{t.get_name()}: {t.get_coro()!r} at {where}")
    return "\n".join(lines)


async def cancel_all(tasks: Iterable[asyncio.Task[object]], timeout: float = 5.0) -> None:
    """Cancel ``tasks`` and wait (bounded) for them to finish."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
