"""Named, supervised background tasks: a crash is logged, counted and restarted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter

log = logging.getLogger("edgebus.tasks")

TASK_RESTARTS = Counter("edgebus_task_restarts_total", "Supervised task crashes (each followed by a restart)", ["service", "task"])


@dataclass
class TaskState:
    name: str
    restarts: int = 0
    last_error: str | None = None
    last_crash: float = 0.0
    running: bool = False


class Supervisor:
    """Runs named tasks; restarts one that crashes with exponential back-off."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.states: dict[str, TaskState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, fn: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
        if name in self._tasks:
            raise ValueError(f"task {name} already started")
        state = TaskState(name)
        self.states[name] = state
        self._tasks[name] = asyncio.create_task(self._run(state, fn, restart), name=f"{self.service}:{name}")

    async def _run(self, state: TaskState, fn: Callable[[], Awaitable[None]], restart: bool) -> None:
        delay = 0.1
        while True:
            state.running = True
            started = time.monotonic()
            try:
                await fn()
                state.running = False
                return
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                state.running = False
                state.restarts += 1
                state.last_error = repr(exc)
                state.last_crash = time.time()
                TASK_RESTARTS.labels(self.service, state.name).inc()
                log.exception("task %s crashed", state.name)
                if not restart:
                    return
                if time.monotonic() - started > 30:
                    delay = 0.1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def healthy(self) -> bool:
        """False when a task keeps crashing (crashed in the last 30 s more than 5 times in total)."""
        now = time.time()
        return not any(s.restarts > 5 and now - s.last_crash < 30 for s in self.states.values())

    async def stop(self, timeout: float = 5.0) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self._tasks.clear()
