"""edgehub's ``link-monitor``: is the node's link to the cloud up?

It asks the node's *own* server (its system user, ``LEAFZ``) whether its leaf connection to
the cloud is up — nothing crosses the link, so an idle link costs only the servers' pings.
The same system connection receives the server's advisories of connections opening and
closing (``$SYS.ACCOUNT.EDGE.CONNECT`` / ``DISCONNECT``); one about a leaf connection, or
either bus reconnecting, makes it check at once. So a link that is up is checked only every
``link_idle_check_interval`` besides; while it is down or changing, every
``link_check_interval``. Going up also needs one answer from the cloud's JetStream API (the
link is useful only then). Without a system credential it asks the cloud's JetStream API at
every ``link_check_interval`` instead. On every down->up transition it wakes the forwarder
(and, through :class:`~services.edgehub.context.Link`, the downstream) and publishes the
new state on ``edgebus.node.<node>.link``; once the link is first up it has the node status
sent (``on_join``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Gauge

from edgebus import clock, names
from edgebus.bus import Bus, BusAuth, BusError, BusMsg, jetstream_reachable
from edgebus.envelope import OP_UPDATE, Envelope
from services.edgehub import logic
from services.edgehub.context import Ctx

log = logging.getLogger("edgebus.edgehub")

LINK_UP = Gauge("edgebus_link_up", "1 while the node's cloud link is up", ["node"])
LINK_CHANGES = Counter("edgebus_link_changes_total", "Cloud link state changes", ["node", "state"])


class LinkMonitor:
    def __init__(self, ctx: Ctx, *, on_join: Callable[[], Awaitable[Any]]) -> None:
        self.ctx = ctx
        self.node = ctx.node
        self.settings = ctx.settings
        self.cfg = ctx.settings.edgehub
        self.bus = ctx.bus
        self.on_join = on_join
        self._sysbus: Bus | None = None
        #: set by a leaf connection's advisory or a bus (re)connecting: check now
        self._wake = asyncio.Event()
        #: the node's server tells of its leaf connections (advisories subscribed)
        self._advised = False
        #: checks still to make at the short interval after a wake-up (the server may
        #: advise a closing connection just before its LEAFZ stops listing it)
        self._settle = 0

    async def _probe(self) -> bool:
        if not self.bus.connected:
            return False
        if self._sysbus is not None:
            try:
                answer = await self._sysbus.request(names.LEAFZ_SUBJECT, json.dumps({"account": "EDGE"}).encode(), timeout=1.0)
                leaf = logic.leaf_up(json.loads(answer.data))
            except (BusError, ValueError) as exc:
                log.debug("leafz of the node's server: %s", exc)
                leaf = None
            if leaf is False:
                return False
            if leaf and self.ctx.link.up:
                return True  # steady state: nothing asked of the cloud
            # going up (or no answer from the node's server): is the cloud's JetStream there?
        return await jetstream_reachable(self.bus, self.settings.cloud_domain, timeout=1.0)

    async def run(self) -> None:
        LINK_UP.labels(self.node).set(0)
        self.bus.on_state(self._on_bus_state)
        if self.cfg.link_probe == "leafz" and self.cfg.system_nkey_file:
            self._sysbus = Bus(self.settings.nats.servers(), name="edgehub-link", request_timeout=2.0, ping_interval=self.settings.nats.ping_interval, auth=BusAuth(nkey_file=self.cfg.system_nkey_file))
            try:
                await self._sysbus.connect(retry_for=10)
            except BusError as exc:
                log.warning("no system connection to the node's server (%s): the link is probed over it", exc)
                self._sysbus = None
            else:
                self._sysbus.on_state(self._on_bus_state)
                await self._subscribe_advisories(self._sysbus)
        try:
            await self._loop()
        finally:
            if self._sysbus is not None:
                await self._sysbus.close()
                self._sysbus = None

    def _on_bus_state(self, up: bool) -> None:
        self._wake_now()

    def _wake_now(self) -> None:
        self._settle = 3
        self._wake.set()

    async def _subscribe_advisories(self, sysbus: Bus) -> None:
        async def advisory(m: BusMsg) -> None:
            if logic.leaf_advisory(m.data):
                self._wake_now()

        try:
            for subject in names.account_connection_events("EDGE"):
                await sysbus.subscribe(subject, advisory)
        except Exception as exc:  # any failure to subscribe leaves the periodic check
            log.warning("no connection advisories from the node's server (%s): the link is checked every %.1fs", exc, self.cfg.link_check_interval)
            return
        self._advised = True

    def _next_check(self, up: bool) -> float:
        if self._settle > 0:
            self._settle -= 1
            return self.cfg.link_check_interval
        if up and self._advised:
            return max(self.cfg.link_idle_check_interval, self.cfg.link_check_interval)
        return self.cfg.link_check_interval

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            up = await self._probe()
            if self.ctx.link.set(up):
                LINK_UP.labels(self.node).set(1 if up else 0)
                LINK_CHANGES.labels(self.node, "up" if up else "down").inc()
                log.info("cloud link %s", "up" if up else "down")
                await self._publish()
                if up:
                    self.ctx.wake_forwarder.set()
            if up and not self.ctx.joined:
                self.ctx.joined = True
                await self.on_join()
            await clock.wait_set(self._wake, self._next_check(up))

    async def _publish(self) -> None:
        env = Envelope.new(source="edgehub", operation=OP_UPDATE, resource="link", content={"node": self.node, "up": self.ctx.link.up, "since": self.ctx.link.since})
        try:
            await self.bus.publish(names.link_subject(self.node), env)
        except BusError:
            pass
