"""Named, supervised background tasks: a crash is logged, counted and restarted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter

from edgebus import clock
from edgebus.backoff import Backoff

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
        #: set at every crash (health can turn bad only then): watchers wait on it instead of polling
        self.crashed = asyncio.Event()

    def start(self, name: str, fn: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
        if name in self._tasks:
            raise ValueError(f"task {name} already started")
        state = TaskState(name)
        self.states[name] = state
        self._tasks[name] = asyncio.create_task(self._run(state, fn, restart), name=f"{self.service}:{name}")

    async def _run(self, state: TaskState, fn: Callable[[], Awaitable[None]], restart: bool) -> None:
        backoff = Backoff(0.1, 10.0)
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
                self.crashed.set()
                log.exception("task %s crashed", state.name)
                if not restart:
                    return
                if time.monotonic() - started > 30:
                    backoff.reset()  # it ran well for a while: this is a new failure
                await asyncio.sleep(backoff.next())

    def healthy(self) -> bool:
        """False when a task keeps crashing (crashed in the last 30 s more than 5 times in total)."""
        now = time.time()
        return not any(s.restarts > 5 and now - s.last_crash < 30 for s in self.states.values())

    async def stop(self, timeout: float = 5.0, *, recancel: float = 1.0) -> None:
        """Cancel every task and wait up to ``timeout`` for them to end, cancelling again
        every ``recancel`` seconds one that is still running (:func:`clock.cancel_and_wait`)."""
        pending = await clock.cancel_and_wait(set(self._tasks.values()), timeout=timeout, recancel=recancel)
        if pending:
            log.warning("tasks still running %.0fs after they were cancelled: %s", timeout, ", ".join(sorted(t.get_name() for t in pending)))
        self._tasks.clear()
