"""The all-in-one edge process: every edge service of a node in one Python process.

Each service is a :class:`~edgebus.allinone.member.Member`: its own
:class:`~edgebus.runtime.Service` with its own NATS connection and credential, routes,
streams, consumers and LMDB environment - exactly those of the service's own process - kept
running by itself (a failing one is started anew without touching the others). Optional
services (mappers, edgemesh) are started while the node needs them
(:mod:`edgebus.allinone.ondemand`). On a node's own host the process also runs the node's
nats-server (and containerd) beside it (:mod:`edgebus.allinone.children`).

One operations endpoint serves the whole process: ``/healthz`` and ``/readyz`` (every wanted
service), ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from edgebus.allinone.children import Children
from edgebus.allinone.member import Member
from edgebus.allinone.ondemand import Demand
from edgebus.allinone.settings import Settings
from edgebus.bus import Backoff, Bus
from edgebus.metaclient import MetaClient

log = logging.getLogger("edgebus.allinone")


class Host:
    def __init__(self, settings: Settings) -> None:
        if not settings.node:
            raise SystemExit("the all-in-one process needs EDGEBUS_NODE (the name of this edge node)")
        self.settings = settings
        self.node = settings.node
        cfg = settings.allinone
        self.members: dict[str, Member] = {n: Member(n, cfg) for n in cfg.services}
        self.members.update({n: Member(n, cfg, on_demand=True) for n in cfg.on_demand if n not in self.members})
        self.children = Children.load(cfg.children_file) if cfg.children_file else None
        self.bus: Bus | None = None
        self.demand: Demand | None = None
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http_stop = asyncio.Event()

    # -- state ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        services = {n: m.health() for n, m in self.members.items()}
        out: dict[str, Any] = {"ok": all(s["ok"] for s in services.values()) and not self.stopping.is_set(), "node": self.node, "services": services}
        if self.children is not None:
            out["children"] = self.children.state()
        return out

    def ready(self) -> dict[str, Any]:
        services = {n: m.ready() for n, m in self.members.items()}
        demand = self.demand is None or self.demand.wanted is not None
        return {"ok": demand and all(s["ok"] for s in services.values()) and not self.stopping.is_set(), "node": self.node, "services": services}

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        ops = self.settings.ops
        if ops.port:
            from edgebus.runtime.ops import ops_app, serve_http

            started = asyncio.Event()
            http = asyncio.create_task(serve_http(ops_app(self.health, self.ready), ops.host, ops.port, self._http_stop, started=started), name="ops-http")
            self._tasks.append(http)
            waiter = asyncio.create_task(started.wait())
            await asyncio.wait({http, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if http.done():
                http.result()
        if self.children is not None:
            await self.children.start()
        for name in self.settings.allinone.services:
            self.members[name].want(True)
        on_demand = [m.name for m in self.members.values() if m.on_demand]
        if on_demand:
            n = self.settings.nats
            self.bus = Bus(n.servers(), name=f"allinone@{self.node}", ping_interval=n.ping_interval, request_timeout=n.request_timeout, auth=n.auth(), node=self.node, replicas=n.replicas)
            meta = MetaClient(self.bus, self.node, timeout=5.0, source="allinone")
            self.demand = Demand(meta, on_demand, self._apply, linger=self.settings.allinone.linger)
            self.bus.on_state(lambda up: self.demand.relist() if up and self.demand else None)
            self._tasks.append(asyncio.create_task(self._follow_demand(), name="demand"))
        log.info("all-in-one node %s: %s always, %s on demand", self.node, ", ".join(self.settings.allinone.services), ", ".join(on_demand) or "nothing")

    async def _apply(self, wanted: set[str]) -> None:
        for m in self.members.values():
            if m.on_demand:
                m.want(m.name in wanted)

    async def _follow_demand(self) -> None:
        assert self.bus is not None and self.demand is not None
        await self.bus.connect()
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                await self.demand.run()
            except Exception:
                delay = backoff.next()
                log.exception("following what the node needs failed; again in %.1fs", delay)
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        log.info("all-in-one node %s stopping", self.node)
        for t in self._tasks:
            if t.get_name() != "ops-http":
                t.cancel()
        await asyncio.gather(*(m.stop() for m in self.members.values()))
        if self.bus is not None:
            await self.bus.close()
        if self.children is not None:
            await self.children.stop()
        self._http_stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("all-in-one node %s stopped", self.node)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then stop every service (each drains)."""
        loop = asyncio.get_running_loop()
        requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, requested.set)
        try:
            await self.start()
            await requested.wait()
        finally:
            await self.stop()


def main() -> None:
    from edgebus.runtime import setup_logging
    from edgebus.runtime.service import run_loop

    settings = Settings()
    setup_logging("allinone", settings)
    try:
        run_loop(Host(settings).run())
    except KeyboardInterrupt:
        pass
