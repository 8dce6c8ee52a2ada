"""edgehub's ``heartbeat`` and ``node-status`` tasks.

The node status goes into the outbox, so it is kept while offline and forwarded when the
link is back; it is sent when its facts changed, or every ``status_report_interval`` (5 min)
otherwise, and once when the link first comes up. A heartbeat says the node is alive *now*:
one kept while offline says nothing when it arrives (the cloud counts a heartbeat only if it
stored it within the grace period), so heartbeats are sent only while the link is up,
straight into the cloud's upstream stream: every ``heartbeat_interval``, one small message
(the envelope alone, no headers: about 140 bytes) published without asking for an ack - a
lost one is followed by the next, and the link's state is watched on its own - not a
forwarded batch with the outbox's cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from edgebus import clock, names
from edgebus.bus import BusError
from edgebus.envelope import OP_KEEPALIVE, OP_UPDATE, Envelope
from edgebus.names import ObjectRef
from services.edgehub import logic
from services.edgehub.context import Ctx

log = logging.getLogger("edgebus.edgehub")


def heartbeat_body(node: str) -> bytes:
    """A heartbeat as it goes on the wire: the bare envelope (its routing metadata is not
    repeated in headers; the subject names the node and the kind)."""
    return Envelope.new(source="edgehub", operation=OP_KEEPALIVE, resource="nodes", content={"time": clock.now_ns()}).encode()


class NodeStatus:
    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.node = ctx.node
        self.cfg = ctx.settings.edgehub
        self.bus = ctx.bus
        self._resolving: asyncio.Future[str] | None = None
        self._resolved = "127.0.0.1"

    async def heartbeats(self) -> None:
        while True:
            await self.ctx.link.wait_up()
            try:
                await self.bus.publish(names.up_subject(self.node, names.UP_HEARTBEAT), heartbeat_body(self.node))
                self.ctx.last_heartbeat = time.time()
            except BusError as exc:
                log.warning("heartbeat not sent: %s", exc)
            await asyncio.sleep(self.cfg.heartbeat_interval)

    async def publish(self, status: dict[str, Any] | None = None) -> bool:
        env = Envelope.new(
            source="edgehub",
            operation=OP_UPDATE,
            resource="nodes",
            content={"time": clock.now_ns(), "status": status or logic.node_status(await self._internal_ip())},
        )
        ref = ObjectRef("nodes", None, self.node)
        try:
            await self.bus.js_publish(names.outbox_subject(self.node, names.UP_STATUS, ref), env, stream=names.STREAM_EDGE_UP)
            return True
        except BusError as exc:
            log.warning("node status not stored: %s", exc)
            return False

    async def _internal_ip(self) -> str:
        """The configured address, or the hostname resolved off the event loop (at most
        ``resolve_timeout``; a node with a broken DNS keeps its pings, heartbeats and
        forwarding going): the last address resolved, or 127.0.0.1."""
        if self.cfg.internal_ip:
            return self.cfg.internal_ip
        if self._resolving is None or self._resolving.done():
            self._resolving = asyncio.get_running_loop().run_in_executor(None, logic.resolve_hostname)
        try:
            self._resolved = await asyncio.wait_for(asyncio.shield(self._resolving), self.cfg.resolve_timeout)
        except (OSError, TimeoutError) as exc:
            log.info("hostname not resolved (%s); reporting %s", exc or "timed out", self._resolved)
        return self._resolved

    async def run(self) -> None:
        """The node status when its facts changed, and every ``status_report_interval``
        otherwise: an idle link carries no status report a minute."""
        last: dict[str, Any] | None = None
        sent_at = 0.0
        while True:
            status = logic.node_status(await self._internal_ip())
            if logic.status_due(last, status, time.monotonic() - sent_at, self.cfg.status_report_interval):
                if await self.publish(status):
                    last, sent_at = status, time.monotonic()
            await asyncio.sleep(self.cfg.status_interval)
