"""A window of downstream publishes in flight: acks awaited together, per-subject order kept."""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any


class Window:
    """Publishes in flight, at most ``size`` (their acks are awaited together, so a burst of
    changes is not one round trip per message). A subject's next publish starts only after
    its previous one is acknowledged: per-subject order - latest wins - is kept. A publish
    that fails for good surfaces from :meth:`failure` (and from the next :meth:`submit`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.by_subject: dict[str, asyncio.Task[None]] = {}
        self.order: deque[asyncio.Task[None]] = deque()
        self._error: BaseException | None = None
        self._failed = asyncio.Event()

    async def submit(self, subject: str, send: Callable[[], Coroutine[Any, Any, None]]) -> None:
        prev = self.by_subject.get(subject)
        if prev is not None:
            await prev
        while len(self.order) >= self.size:
            await self.order.popleft()
        if self._error is not None:
            raise self._error
        t = asyncio.create_task(send())
        self.by_subject[subject] = t
        self.order.append(t)
        t.add_done_callback(functools.partial(self._done, subject))

    def _done(self, subject: str, t: asyncio.Task[None]) -> None:
        if self.by_subject.get(subject) is t:
            del self.by_subject[subject]
        while self.order and self.order[0].done() and (self.order[0].cancelled() or self.order[0].exception() is None):
            self.order.popleft()
        if not t.cancelled() and t.exception() is not None and self._error is None:
            self._error = t.exception()
            self._failed.set()

    async def drain(self) -> None:
        while self.order:
            await self.order.popleft()

    async def failure(self) -> None:
        await self._failed.wait()
        assert self._error is not None
        raise self._error

    def cancel(self) -> None:
        for t in self.order:
            t.cancel()
        self.order.clear()
        self.by_subject.clear()
