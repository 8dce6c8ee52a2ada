"""Leader election with a NATS KV lease.

One key per role in the bucket ``edgebus-leases`` (:data:`edgebus.names.BUCKET_LEASES`) (whose entries expire after ``ttl``
seconds unless renewed). The holder renews every ``ttl / 3`` with a compare-and-set on its
own revision; anyone else tries to ``create`` the key every ``ttl / 3`` and wins once it
has expired (the holder died or lost its connection). A holder whose renewal fails steps
down at once, so two holders never act at the same time for longer than one renewal
interval, and a dead holder is replaced within about ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

from edgebus import names
from edgebus.bus.connection import Bus
from edgebus.bus.errors import BusError, WrongRevision
from edgebus.bus.kv import KV, KeyExists

log = logging.getLogger("edgebus.lease")


class Lease:
    def __init__(self, bus: Bus, role: str, *, ttl: float = 6.0, identity: str | None = None) -> None:
        self.bus = bus
        self.role = role
        self.ttl = ttl
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.kv = KV(bus, names.BUCKET_LEASES)
        self.revision: int | None = None
        self.leader = asyncio.Event()
        self.lost = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self.leader.is_set()

    async def _ensure_bucket(self) -> None:
        await self.kv.ensure(history=1, ttl=self.ttl)

    async def _try(self) -> None:
        value = self.identity.encode()
        if self.revision is not None:
            try:
                self.revision = await self.kv.update(self.role, value, self.revision)
                return
            except (WrongRevision, BusError) as exc:
                log.warning("lease %s lost (%s)", self.role, exc)
                self._step_down()
                return
        try:
            self.revision = await self.kv.create(self.role, value)
        except KeyExists:
            return
        log.info("lease %s acquired by %s", self.role, self.identity)
        self.lost.clear()
        self.leader.set()

    def _step_down(self) -> None:
        self.revision = None
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
                await asyncio.sleep(self.ttl / 3)
        finally:
            await self.release()

    async def release(self) -> None:
        """Give the lease up (on shutdown) so a standby takes over at once."""
        rev, self.revision = self.revision, None
        self._step_down()
        if rev is not None:
            try:
                await self.kv.delete(self.role, revision=rev)
            except BusError:
                pass

    async def while_leader(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` whenever this instance holds the lease; cancel it the moment it does not."""
        while True:
            await self.leader.wait()
            task = asyncio.create_task(work(), name=f"leader:{self.role}")
            lost = asyncio.create_task(self.lost.wait())
            done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                lost.cancel()
                task.result()  # a crash propagates to the supervisor
                return
            log.warning("lost the %s lease: stopping its work", self.role)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves: do not swallow it
            except Exception:
                pass
