"""Leader election with a NATS KV lease, a local renew deadline and fenced writes.

One key per role in the bucket ``edgebus-leases`` (:data:`edgebus.names.BUCKET_LEASES`).
Every write of an entry carries its own TTL (``Nats-TTL``), so each role's lease lasts its
own ``ttl`` whatever the bucket was created with (the bucket's max age, :data:`MAX_TTL`,
only bounds entries written without one). The holder renews every ``ttl / 3`` with a
compare-and-set on its own revision; anyone else tries to ``create`` the key every
``ttl / 3`` and wins once it has expired (the holder died or lost its connection).

**Renew deadline**: a holder that has not renewed within ``ttl / 2`` of sending its last
successful renewal steps down - also while that renewal is still unanswered (a frozen
link). The server counts the lease's TTL from when it stored that renewal, which is after
it was sent, so a partitioned holder stops acting at least ``ttl / 2`` before another can
acquire the lease.

**Fencing**: the *epoch* of a holder is the lease's revision when it acquired it (it grows
with every new holder). :meth:`Lease.fence` names a record in a stream the leader writes
to; on acquiring, the leader stores its epoch there (compare-and-set, never over a newer
epoch) before it acts, and every write it makes carries :meth:`Fence.headers`:
``Nats-Expected-Last-Subject-Sequence`` of that record (``...-Subject`` names it, NATS
2.11+) and its epoch. A write from an earlier holder - one still in flight when it stepped
down, or held back by a frozen link - is refused by the server once a newer holder has
raised the fence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from edgebus import clock, names
from edgebus.bus.connection import Bus
from edgebus.bus.errors import BusError, WrongRevision
from edgebus.bus.kv import KV, KeyExists
from edgebus.bus.streams import get_last

log = logging.getLogger("edgebus.lease")

#: the longest lease (the bucket's max age: an entry written without a TTL expires then)
MAX_TTL = 60.0


class Fenced(BusError):
    """A newer leader holds the fence: this one's writes are refused."""


def _ttl(seconds: float) -> str:
    return f"{seconds:g}s"


class Fence:
    """A leader's fence in one stream: a record (``subject``) holding the epoch of the
    latest leader, which the leader's writes into that stream must find unchanged."""

    def __init__(self, bus: Bus, stream: str, subject: str, *, domain: str | None = None) -> None:
        self.bus = bus
        self.stream = stream
        self.subject = subject
        self.domain = domain
        self.seq: int | None = None
        self.epoch = 0

    async def raise_(self, epoch: int) -> None:
        """Store ``epoch`` in the record unless a newer one is there (then :class:`Fenced`)."""
        self.seq = None
        for _ in range(10):
            last = await get_last(self.bus, self.stream, self.subject, domain=self.domain)
            held = int(last.headers.get(names.HDR_LEASE_EPOCH, "0") or 0) if last else 0
            if held > epoch:
                raise Fenced(f"{self.subject}: a newer leader (epoch {held}) holds the fence, not {epoch}")
            try:
                ack = await self.bus.js_publish(
                    self.subject, b"", headers={names.HDR_LEASE_EPOCH: str(epoch)}, stream=self.stream, domain=self.domain, expected_last_subject_seq=last.seq if last else 0
                )
            except WrongRevision:
                continue  # written meanwhile: look again
            self.seq, self.epoch = ack.seq, epoch
            return
        raise Fenced(f"{self.subject}: the fence kept changing")

    def headers(self) -> dict[str, str]:
        """Headers of a write fenced by this record (:class:`Fenced` when not raised)."""
        if self.seq is None:
            raise Fenced(f"{self.subject}: not the leader")
        return {names.HDR_EXPECTED_LAST_SUBJECT_SEQ: str(self.seq), names.HDR_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT: self.subject, names.HDR_LEASE_EPOCH: str(self.epoch)}

    def lower(self) -> None:
        self.seq = None


class Lease:
    def __init__(self, bus: Bus, role: str, *, ttl: float = 6.0, identity: str | None = None) -> None:
        if not 1.0 <= ttl <= MAX_TTL:
            raise ValueError(f"a lease lasts 1 to {MAX_TTL:g} seconds, not {ttl}")
        self.bus = bus
        self.role = role
        self.ttl = ttl
        #: a holder that did not renew within this long of sending its last renewal stops
        self.deadline = ttl / 2
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.kv = KV(bus, names.BUCKET_LEASES)
        self.revision: int | None = None
        #: the lease's revision when this holder acquired it (0: not the leader)
        self.epoch = 0
        self.leader = asyncio.Event()
        self.lost = asyncio.Event()
        self.fences: list[Fence] = []
        self._renewed = 0.0  # monotonic time the last successful write was sent

    @property
    def is_leader(self) -> bool:
        return self.leader.is_set()

    def fence(self, stream: str, subject: str, *, domain: str | None = None) -> Fence:
        """A fence this lease raises in ``stream`` on every acquisition, before acting."""
        f = Fence(self.bus, stream, subject, domain=domain)
        self.fences.append(f)
        return f

    async def _ensure_bucket(self) -> None:
        await self.kv.ensure(history=1, ttl=MAX_TTL, max_age=MAX_TTL)

    def _left(self) -> float:
        return self._renewed + self.deadline - time.monotonic()

    async def _try(self) -> None:
        value = self.identity.encode()
        headers = {names.HDR_TTL: _ttl(self.ttl)}
        if self.revision is not None:
            sent = time.monotonic()
            left = self._left()
            if left <= 0:
                log.warning("lease %s: not renewed within %.1fs; stepping down", self.role, self.deadline)
                self._step_down()
                return
            try:
                self.revision = await clock.within(self.kv.update(self.role, value, self.revision, headers=headers), left)
                self._renewed = sent
            except (WrongRevision, BusError, TimeoutError) as exc:
                log.warning("lease %s lost (%s)", self.role, exc or f"no renewal within {self.deadline:.1f}s")
                self._step_down()
            return
        sent = time.monotonic()
        try:
            rev = await self.kv.create(self.role, value, headers=headers)
        except KeyExists:
            return
        self.revision, self.epoch, self._renewed = rev, rev, sent
        try:
            for f in self.fences:
                await clock.within(f.raise_(rev), max(self._left(), 0.001))
        except (BusError, TimeoutError) as exc:
            log.warning("lease %s acquired but its fence not raised (%s); stepping down", self.role, exc or "timed out")
            await self.release()
            return
        if self._left() <= 0:
            self._step_down()
            return
        log.info("lease %s acquired by %s (epoch %d)", self.role, self.identity, rev)
        self.lost.clear()
        self.leader.set()

    def _step_down(self) -> None:
        self.revision = None
        self.epoch = 0
        for f in self.fences:
            f.lower()
        if self.leader.is_set():
            self.leader.clear()
            self.lost.set()

    async def run(self) -> None:
        """Campaign and renew forever (a supervised task)."""
        while True:
            try:
                await self._ensure_bucket()
                break
            except BusError as exc:
                log.info("lease bucket not ready: %s", exc)
                await asyncio.sleep(1)
        try:
            while True:
                try:
                    await self._try()
                except BusError as exc:
                    log.info("lease %s: %s", self.role, exc)
                    self._step_down()
                await self._sleep()
        finally:
            await self.release()

    async def _sleep(self) -> None:
        """``ttl / 3`` - but a holder wakes at its deadline whatever happens meanwhile."""
        pause = self.ttl / 3
        if self.revision is not None:
            pause = min(pause, max(self._left(), 0.0))
        await asyncio.sleep(pause)

    async def release(self) -> None:
        """Give the lease up (on shutdown) so a standby takes over at once."""
        rev, self.revision = self.revision, None
        self._step_down()
        if rev is not None:
            try:
                await clock.within(self.kv.delete(self.role, revision=rev), self.deadline)
            except (BusError, TimeoutError):
                pass

    async def while_leader(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``work`` whenever this instance holds the lease; cancel it the moment it does not."""
        while True:
            await self.leader.wait()
            task = asyncio.create_task(work(), name=f"leader:{self.role}")
            lost = asyncio.create_task(self.lost.wait())
            try:
                done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # stopped while leading: the work stops with us
                lost.cancel()
                task.cancel()
                await _wind_down(task)
                raise
            if task in done:
                lost.cancel()
                task.result()  # a crash propagates to the supervisor
                return
            log.warning("lost the %s lease: stopping its work", self.role)
            task.cancel()
            await _wind_down(task)  # (a stop meanwhile is raised once the work has ended)


async def _wind_down(task: asyncio.Task[Any]) -> None:
    """Wait until a cancelled ``task`` has ended, also when the waiter is cancelled
    meanwhile (the cancellation is raised afterwards): no work outlives its leader."""
    try:
        await clock.cancel_and_wait({task}, shield=True)
    finally:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.debug("the %s work ended with %r", task.get_name(), task.exception())
