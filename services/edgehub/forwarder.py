"""edgehub's ``forwarder`` and ``backlog`` tasks: the outbox to the cloud, exactly once.

The forwarder moves the outbox (``EDGEBUS_EDGE_UP``) to the cloud (``EDGEBUS_UP``) in order,
one message at a time, each with ``Nats-Msg-Id`` and its outbox sequence, in one atomic
batch with the node's cursor. After any failure it asks the cloud which outbox sequence it
holds last and resumes right after it: every message reaches the cloud exactly once,
whatever the outage length.

The backlog reports send what the outbox holds and the cloud does not, straight to the
cloud while the link is up: once at each link-up (before draining) and then on change.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from contextlib import aclosing
from typing import Any

from prometheus_client import Counter, Gauge

from edgebus import clock, names
from edgebus.bus import Backoff, BusError, BusMsg, CaughtUp, Rejected, get_last, get_msg, read_stream, stream_state
from edgebus.envelope import OP_UPDATE, Envelope
from edgebus.errors import RetryLater
from edgebus.names import ObjectRef
from edgebus.objects.resources import parse_time
from edgebus.runtime import Service
from services.edgehub import logic
from services.edgehub.context import Ctx

log = logging.getLogger("edgebus.edgehub")

FORWARDED = Counter("edgebus_forwarded_total", "Outbox messages forwarded to the cloud", ["node"])
BACKLOG_UP = Gauge("edgebus_backlog_up", "Outbox messages not yet in the cloud", ["node"])
OUTBOX_DROPPED = Counter("edgebus_outbox_dropped_total", "Outbox messages dropped by the outbox's retention before they were forwarded", ["node"])


class Forwarder:
    def __init__(self, ctx: Ctx, *, stopping: asyncio.Event) -> None:
        self.ctx = ctx
        self.node = ctx.node
        self.settings = ctx.settings
        self.cfg = ctx.settings.edgehub
        self.bus = ctx.bus
        #: the service's stop has begun (``Service.stopping``)
        self.stopping = stopping
        #: atomic batches (message + cursor); off while the cloud's stream refuses them
        self._atomic = True
        self._atomic_retry = 0.0
        self._dropped_upto = 0
        #: the outbox backlog last reported to the cloud (None: report the next one)
        self._backlog_last: dict[str, Any] | None = None
        self._backlog_task: asyncio.Task[None] | None = None

    # -- forwarding -------------------------------------------------------------------
    async def run(self) -> None:
        backoff = Backoff(0.1, 2.0)
        # a stopping service forwards no more: a cancellation lost in a race with a wake-up
        # (or turned into a BusError by the closing connection) must not keep it looping
        while not self.stopping.is_set():
            await self.ctx.link.wait_up()
            try:
                await self._forward_until_failure()
            except (BusError, RetryLater) as exc:
                if self.stopping.is_set():
                    return
                delay = backoff.next()
                log.info("forwarding paused (%s); resuming in %.1fs", exc, delay)
                self.ctx.wake_forwarder.clear()
                await clock.wait_set(self.ctx.wake_forwarder, delay)
            else:
                backoff.reset()

    async def _forward_until_failure(self) -> None:
        if not self.ctx.epoch:
            self.ctx.epoch = (await stream_state(self.bus, names.STREAM_EDGE_UP)).created
        cloud = self.settings.cloud_domain
        # the cursor is stored with every forwarded message and never expires; the last
        # message covers a forwarder (or cloud) that wrote none
        cursor = await get_last(self.bus, names.STREAM_UP, names.up_cursor_subject(self.node), domain=cloud)
        last = await get_last(self.bus, names.STREAM_UP, names.up_filter(self.node), domain=cloud)
        self.ctx.cloud_seq = logic.resume_point(cursor.headers if cursor else None, self.ctx.epoch, last.headers if last else None)
        outbox = await stream_state(self.bus, names.STREAM_EDGE_UP)
        lost = logic.newly_dropped(self.ctx.cloud_seq, outbox.first_seq, self._dropped_upto)
        self._dropped_upto = max(self._dropped_upto, outbox.first_seq - 1)
        if lost:
            OUTBOX_DROPPED.labels(self.node).inc(lost)
            log.error("%d outbox messages were dropped by the outbox's retention before they could be forwarded", lost)
        log.info("forwarding outbox from sequence %d", self.ctx.cloud_seq + 1)
        # what the link's outage left to forward, measured now and sent beside the forwarding
        # (a slow cloud never holds the forwarder up)
        if self._backlog_task is None or self._backlog_task.done():
            self._backlog_task = asyncio.create_task(self._report_backlog_quietly(force=True), name="backlog-at-link-up")
        async with aclosing(
            # an idle fetch is answered as soon as a message is stored: a long one costs no
            # latency, only fewer wake-ups of an idle node
            read_stream(self.bus, names.STREAM_EDGE_UP, names.outbox_filter(self.node), start_seq=self.ctx.cloud_seq + 1, poll=10.0)
        ) as it:
            async for m in it:
                if isinstance(m, CaughtUp):
                    BACKLOG_UP.labels(self.node).set(0)
                    continue
                await self._forward(m)
                BACKLOG_UP.labels(self.node).set(m.num_pending)

    async def _forward(self, m: BusMsg) -> None:
        """The message and the node's cursor, in one atomic batch: the cloud holds both or
        neither, so the resume point is exact whatever the cloud stream's retention."""
        subject = names.up_subject_from_outbox(m.subject)
        headers = logic.forward_headers(m.headers, names.encode_token(self.node), self.ctx.epoch, m.seq)
        cursor = (names.up_cursor_subject(self.node), b"", logic.cursor_headers(self.ctx.epoch, m.seq))
        if not self._atomic and time.monotonic() >= self._atomic_retry:
            self._atomic = True  # try again: cloudhub may have updated the stream meanwhile
        try:
            if self._atomic:
                await self.bus.js_publish_batch([(subject, m.data, headers), cursor], timeout=self.cfg.forward_timeout)
            else:
                await self.bus.js_publish(subject, m.data, headers=headers, stream=names.STREAM_UP, timeout=self.cfg.forward_timeout)
        except Rejected as exc:
            if exc.code == logic.ATOMIC_DISABLED:
                # a cloud whose EDGEBUS_UP predates cursors: forward one by one and resume from
                # the last message, trying atomic batches again a minute later
                log.warning("the cloud's %s takes no atomic batches; forwarding without a cursor", names.STREAM_UP)
                self._atomic = False
                self._atomic_retry = time.monotonic() + 60.0
                raise
            if exc.code != logic.BATCH_DUPLICATE:
                raise
            # stored before (without a cursor): only the cursor moves
            await self.bus.js_publish_batch([cursor], timeout=self.cfg.forward_timeout)
        self.ctx.cloud_seq = m.seq
        self.ctx.forwarded += 1
        FORWARDED.labels(self.node).inc()

    # -- the outbox backlog ----------------------------------------------------------------
    async def backlog(self) -> dict[str, Any]:
        """The outbox's backlog now (:func:`logic.outbox_backlog`)."""
        local = await stream_state(self.bus, names.STREAM_EDGE_UP)
        oldest = None
        if local.last_seq > self.ctx.cloud_seq:
            m = await get_msg(self.bus, names.STREAM_EDGE_UP, max(self.ctx.cloud_seq + 1, local.first_seq))
            stored = parse_time(m.headers.get(names.HDR_TIME_STAMP)) if m is not None else None
            oldest = (dt.datetime.now(dt.UTC) - stored).total_seconds() if stored else None
        return logic.outbox_backlog(local.last_seq, self.ctx.cloud_seq, local.messages, local.bytes, oldest)

    async def backlog_reports(self) -> None:
        """While the link is up, report the backlog when it changed, and once each time the
        link comes up (the forwarder reports it before it drains it); the cloud keeps the
        last one while the link is down. A report lost on the way is replaced by the next."""
        while True:
            await asyncio.sleep(self.cfg.backlog_interval)
            if not self.ctx.link.up or not self.ctx.epoch:
                self._backlog_last = None
                continue
            await self._report_backlog_quietly()

    async def stop_backlog_report(self, _: Service[Ctx]) -> None:
        if self._backlog_task is not None:
            self._backlog_task.cancel()
            await asyncio.gather(self._backlog_task, return_exceptions=True)

    async def _report_backlog_quietly(self, *, force: bool = False) -> None:
        try:
            await self._report_backlog(force=force)
        except BusError as exc:
            log.info("outbox backlog not reported: %s", exc)

    async def _report_backlog(self, *, force: bool = False) -> None:
        """Send the backlog straight to the cloud, not through the outbox (it would arrive
        behind the very backlog it reports). Not to a cloud whose stream predates cursors:
        there the last message of the node is its resume point, and a report carries none."""
        if not self._atomic:
            return
        now = await self.backlog()
        if not force and not logic.backlog_changed(self._backlog_last, now):
            return
        env = Envelope.new(source=names.OUTBOX_REPORTER, operation=OP_UPDATE, resource="nodes", content={"time": clock.now_ns(), "status": {}, "outbox": now})
        ref = ObjectRef("nodes", None, self.node)
        await self.bus.js_publish(names.up_subject(self.node, names.UP_STATUS, ref), env, stream=names.STREAM_UP, timeout=self.cfg.forward_timeout)
        self._backlog_last = now
