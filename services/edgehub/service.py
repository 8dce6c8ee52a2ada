"""edgehub: owns the node's link to the cloud.

Tasks:

* ``link-monitor`` probes the cloud's JetStream API over the leaf connection; on every
  down->up transition it re-adds ``EDGEBUS_EDGE_DOWN``'s source (a sourcing stream may back
  off ~40 s after the cloud server restarts otherwise), sends its node status once, and
  publishes the new state on ``edgebus.node.<node>.link``.
* ``credentials`` renews the node's link certificate (see :mod:`services.edgehub.credentials`).
* ``forwarder`` moves the outbox (``EDGEBUS_EDGE_UP``) to the cloud (``EDGEBUS_UP``) in
  order, one message at a time, each with ``Nats-Msg-Id`` and its outbox sequence. After
  any failure it asks the cloud which outbox sequence it holds last and resumes right
  after it: every message reaches the cloud exactly once, whatever the outage length.
* ``heartbeat`` / ``node-status`` publish into the outbox, so they are kept while offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from edgebus import names, topology
from edgebus.bus import (
    Backoff,
    Bus,
    BusError,
    BusMsg,
    CaughtUp,
    Message,
    Router,
    get_last,
    jetstream_reachable,
    kick_sources,
    read_stream,
    stream_state,
)
from edgebus.envelope import OP_KEEPALIVE, OP_UPDATE, Envelope
from edgebus.identity.node import NodeIdentity
from edgebus.errors import RetryLater
from edgebus.names import ObjectRef
from edgebus.runtime import Service, setup_logging
from services.edgehub import logic
from services.edgehub.config import Settings
from services.edgehub.credentials import Credentials

log = logging.getLogger("edgebus.edgehub")

LINK_UP = Gauge("edgebus_link_up", "1 while the node's cloud link is up", ["node"])
LINK_CHANGES = Counter("edgebus_link_changes_total", "Cloud link state changes", ["node", "state"])
FORWARDED = Counter("edgebus_forwarded_total", "Outbox messages forwarded to the cloud", ["node"])
BACKLOG_UP = Gauge("edgebus_backlog_up", "Outbox messages not yet in the cloud", ["node"])
SOURCE_KICKS = Counter("edgebus_source_kicks_total", "Times the downstream source was re-added", ["node", "reason"])


@dataclass
class Link:
    """The cloud link as edgehub sees it."""

    up: bool = False
    since: float = field(default_factory=time.time)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _up_event: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, up: bool) -> bool:
        if up == self.up:
            return False
        self.up = up
        self.since = time.time()
        if up:
            self._up_event.set()
        else:
            self._up_event.clear()
        self.changed.set()
        self.changed = asyncio.Event()
        return True

    async def wait_up(self) -> None:
        await self._up_event.wait()


@dataclass
class Ctx:
    node: str
    settings: Settings
    bus: Bus
    link: Link = field(default_factory=Link)
    joined: bool = False
    cloud_seq: int = 0
    local_last_seq: int = 0
    epoch: str = ""
    last_heartbeat: float = 0.0
    forwarded: int = 0
    kicks: int = 0


class EdgeHub:
    def __init__(self, settings: Settings) -> None:
        assert settings.node
        self.settings = settings
        self.node = settings.node
        self.cfg = settings.edgehub
        self.router: Router[Ctx] = Router("edgehub")
        self.svc: Service[Ctx] = Service("edgehub", settings, router=self.router)
        self.ctx = Ctx(node=self.node, settings=settings, bus=self.svc.bus)
        self.svc.ctx = self.ctx
        self._wake_forwarder = asyncio.Event()
        self.router.reply(names.edgehub_subject(self.node, "state"), name="state")(self._state)
        self.svc.on_start(self._ensure_streams)
        self.svc.task("link-monitor", self._link_monitor)
        self.svc.task("forwarder", self._forwarder)
        self.svc.task("heartbeat", self._heartbeats)
        self.svc.task("node-status", self._node_status)
        self.credentials: Credentials | None = None
        if self.cfg.identity_dir:
            self.credentials = Credentials(
                self.node, self.bus, NodeIdentity(Path(self.cfg.identity_dir)), system_nkey_file=self.cfg.system_nkey_file, servers=settings.nats.servers(), link_up=lambda: self.ctx.link.up
            )
            self.svc.task("credentials", self.credentials.run)
        self.svc.readiness_check("streams", lambda: bool(self.ctx.epoch))

    @property
    def bus(self) -> Bus:
        return self.svc.bus

    async def _ensure_streams(self, _: Service[Ctx]) -> None:
        await topology.ensure_edge_streams(self.bus, self.node, self.settings.cloud_domain)
        self.ctx.epoch = (await stream_state(self.bus, names.STREAM_EDGE_UP)).created

    # -- request/reply ----------------------------------------------------------------
    async def _state(self, m: Message, ctx: Ctx) -> dict[str, Any]:
        local = await stream_state(self.bus, names.STREAM_EDGE_UP)
        down = await stream_state(self.bus, names.STREAM_EDGE_DOWN)
        return {
            "node": ctx.node,
            "link": "up" if ctx.link.up else "down",
            "linkSince": ctx.link.since,
            "joined": ctx.joined,
            "lastHeartbeat": ctx.last_heartbeat,
            "outbox": {"lastSeq": local.last_seq, "messages": local.messages, "forwardedSeq": ctx.cloud_seq, "backlog": max(local.last_seq - ctx.cloud_seq, 0)},
            "downstream": {
                "messages": down.messages,
                "lastSeq": down.last_seq,
                "sources": [{"name": s.name, "lag": s.lag, "activeMs": s.active_ms, "error": s.error} for s in down.sources],
            },
            "forwarded": ctx.forwarded,
            "sourceKicks": ctx.kicks,
            "credential": (
                {"linkNotAfter": self.credentials.state.not_after, "renewed": self.credentials.state.renewed, "lastError": self.credentials.state.last_error}
                if self.credentials
                else None
            ),
        }

    # -- link -------------------------------------------------------------------------
    async def _link_monitor(self) -> None:
        LINK_UP.labels(self.node).set(0)
        last_source_check = 0.0
        while True:
            up = self.bus.connected and await jetstream_reachable(self.bus, self.settings.cloud_domain, timeout=1.0)
            if self.ctx.link.set(up):
                LINK_UP.labels(self.node).set(1 if up else 0)
                LINK_CHANGES.labels(self.node, "up" if up else "down").inc()
                log.info("cloud link %s", "up" if up else "down")
                await self._publish_link()
                if up:
                    await self._kick("link-up")
                    self._wake_forwarder.set()
            if up and not self.ctx.joined:
                self.ctx.joined = True
                await self._publish_status()
            now = time.monotonic()
            if up and now - last_source_check > 5.0:
                last_source_check = now
                await self._check_source()
            await asyncio.sleep(self.cfg.link_check_interval)

    async def _publish_link(self) -> None:
        env = Envelope.new(source="edgehub", operation=OP_UPDATE, resource="link", content={"node": self.node, "up": self.ctx.link.up, "since": self.ctx.link.since})
        try:
            await self.bus.publish(names.link_subject(self.node), env)
        except BusError:
            pass

    async def _kick(self, reason: str) -> None:
        try:
            await kick_sources(self.bus, topology.edge_down(self.node, self.settings.cloud_domain))
            self.ctx.kicks += 1
            SOURCE_KICKS.labels(self.node, reason).inc()
            log.info("re-added downstream source (%s)", reason)
        except BusError as exc:
            log.warning("could not re-add downstream source: %s", exc)

    async def _check_source(self) -> None:
        """Kick the downstream source if the server reports it broken while the link is up."""
        try:
            st = await stream_state(self.bus, names.STREAM_EDGE_DOWN)
        except BusError:
            return
        for s in st.sources:
            if s.error or s.active_ms > 30_000:
                await self._kick("stalled" if not s.error else "error")
                return

    # -- forwarding -------------------------------------------------------------------
    async def _forwarder(self) -> None:
        backoff = Backoff(0.1, 2.0)
        while True:
            await self.ctx.link.wait_up()
            try:
                await self._forward_until_failure()
            except (BusError, RetryLater) as exc:
                delay = backoff.next()
                log.info("forwarding paused (%s); resuming in %.1fs", exc, delay)
                self._wake_forwarder.clear()
                try:
                    await asyncio.wait_for(self._wake_forwarder.wait(), delay)
                except TimeoutError:
                    pass
            else:
                backoff.reset()

    async def _forward_until_failure(self) -> None:
        if not self.ctx.epoch:
            self.ctx.epoch = (await stream_state(self.bus, names.STREAM_EDGE_UP)).created
        last = await get_last(self.bus, names.STREAM_UP, names.up_filter(self.node), domain=self.settings.cloud_domain)
        self.ctx.cloud_seq = logic.resume_point(last.headers if last else None, self.ctx.epoch)
        log.info("forwarding outbox from sequence %d", self.ctx.cloud_seq + 1)
        async with aclosing(
            read_stream(self.bus, names.STREAM_EDGE_UP, names.outbox_filter(self.node), start_seq=self.ctx.cloud_seq + 1)
        ) as it:
            async for m in it:
                if isinstance(m, CaughtUp):
                    BACKLOG_UP.labels(self.node).set(0)
                    continue
                await self._forward(m)
                BACKLOG_UP.labels(self.node).set(m.num_pending)

    async def _forward(self, m: BusMsg) -> None:
        headers = {k: v for k, v in m.headers.items() if not k.startswith("Nats-")}
        headers[names.HDR_MSG_ID] = f"{names.encode_token(self.node)}:{self.ctx.epoch}:{m.seq}"
        headers[logic.UP_SEQ] = str(m.seq)
        headers[logic.UP_EPOCH] = self.ctx.epoch
        await self.bus.js_publish(
            names.up_subject_from_outbox(m.subject),
            m.data,
            headers=headers,
            stream=names.STREAM_UP,
            timeout=self.cfg.forward_timeout,
        )
        self.ctx.cloud_seq = m.seq
        self.ctx.forwarded += 1
        FORWARDED.labels(self.node).inc()

    # -- heartbeats and status ----------------------------------------------------------
    async def _heartbeats(self) -> None:
        while True:
            env = Envelope.new(source="edgehub", operation=OP_KEEPALIVE, resource="nodes", content={"node": self.node, "time": time.time_ns(), "link": self.ctx.link.up})
            try:
                await self.bus.js_publish(names.outbox_subject(self.node, names.UP_HEARTBEAT), env, stream=names.STREAM_EDGE_UP)
                self.ctx.last_heartbeat = time.time()
            except BusError as exc:
                log.warning("heartbeat not stored: %s", exc)
            await asyncio.sleep(self.cfg.heartbeat_interval)

    async def _publish_status(self) -> None:
        env = Envelope.new(
            source="edgehub",
            operation=OP_UPDATE,
            resource="nodes",
            content={"time": time.time_ns(), "status": logic.node_status(self.cfg.internal_ip)},
        )
        ref = ObjectRef("nodes", None, self.node)
        try:
            await self.bus.js_publish(names.outbox_subject(self.node, names.UP_STATUS, ref), env, stream=names.STREAM_EDGE_UP)
        except BusError as exc:
            log.warning("node status not stored: %s", exc)

    async def _node_status(self) -> None:
        while True:
            await self._publish_status()
            await asyncio.sleep(self.cfg.status_interval)


def build(settings: Settings | None = None) -> Service[Ctx]:
    settings = settings or Settings()
    if not settings.node:
        raise SystemExit("edgehub needs EDGEBUS_NODE (the name of this edge node)")
    names.node_domain(settings.node)  # validates the name
    return EdgeHub(settings).svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("edgehub", settings)
    run(lambda: build(settings))


__all__ = ["EdgeHub", "build", "main"]
