"""edgemesh wiring: the service table, the DNS server, the proxy and the tunnels.

Tasks:

* ``table`` - reads Services, Endpoints and the node's pods from metamanager (local
  request/reply: works offline) after every metamanager commit event of those resources,
  every ``resync_interval`` and after a reconnect; rebuilds the table and the listeners;
* ``tunnel-frames`` - one subscription for the frames of every tunnel of this node;
* ``tunnel-open`` - tunnel requests from other nodes' edgemesh (queue group);
* ``sweep`` - tunnel keepalives and idle resets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edgebus import names
from edgebus.bus import BusMsg, Router
from edgebus.errors import ApiError
from edgebus.metaclient import MetaClient
from edgebus.objects import ENDPOINTS, PODS, SERVICES
from edgebus.runtime import Service, setup_logging
from services.edgemesh import logic
from services.edgemesh.config import Settings
from services.edgemesh.dns import DnsServer, Resolver, parse_upstreams
from services.edgemesh.proxy import Proxy
from services.edgemesh.tunnel import Tunnels

log = logging.getLogger("edgebus.edgemesh")

WATCHED = (SERVICES.plural, ENDPOINTS.plural, PODS.plural)


def _objects(listing: dict[str, Any]) -> list[dict[str, Any]]:
    return [i["object"] for i in listing.get("items") or [] if isinstance(i.get("object"), dict)]


class Mesh:
    def __init__(self, settings: Settings, svc: Service[Any]) -> None:
        assert settings.node, "edgemesh needs the node name (EDGEBUS_NODE)"
        self.node = settings.node
        self.cfg = settings.edgemesh
        self.svc = svc
        self.table = logic.Table(self.node)
        self.loaded = False
        self.changed = asyncio.Event()
        cfg = self.cfg
        self.tunnels = Tunnels(
            svc.bus,
            self.node,
            lambda: self.table.local_targets,
            window=cfg.window,
            chunk=cfg.chunk,
            keepalive=cfg.keepalive,
            idle_timeout=cfg.idle_timeout,
            connect_timeout=cfg.connect_timeout,
            max_tunnels=cfg.max_tunnels,
        )
        self.proxy = Proxy(self.node, self.tunnels, lambda: self.table, connect_timeout=cfg.connect_timeout, max_attempts=cfg.max_attempts)
        self.resolver = Resolver(
            lambda: self.table,
            domain=cfg.cluster_domain,
            default_namespace=cfg.default_namespace,
            upstreams=parse_upstreams(cfg.upstream),
            ttl=cfg.dns_ttl,
            timeout=cfg.upstream_timeout,
        )
        self.dns = DnsServer(self.resolver, cfg.dns_host, cfg.dns_port) if cfg.dns_port else None
        svc.bus.on_state(lambda up: self.changed.set() if up else None)

    async def start_dns(self, _: Service[Any]) -> None:
        if self.dns is not None and self.dns._udp is None:
            await self.dns.start()

    async def follow(self) -> None:
        """Keep the table equal to what metamanager holds (level-triggered)."""
        bus = self.svc.bus
        meta = MetaClient(bus, self.node, timeout=5.0, source="edgemesh")

        async def on_event(_: BusMsg) -> None:
            self.changed.set()

        unsubs = [await bus.subscribe(names.meta_events_subject(self.node, r), on_event) for r in WATCHED]
        try:
            while True:
                self.changed.clear()
                try:
                    services = _objects(await meta.list(SERVICES.plural))
                    endpoints = _objects(await meta.list(ENDPOINTS.plural))
                    pods = _objects(await meta.list(PODS.plural))
                except ApiError as exc:
                    log.info("services not readable yet: %s", exc.message)
                    await asyncio.sleep(0.5)
                    continue
                self.table = logic.build_table(self.node, services, endpoints, pods, self.cfg.service_cidr)
                await self.proxy.sync(self.table)
                self.loaded = True
                try:
                    await asyncio.wait_for(self.changed.wait(), self.cfg.resync_interval)
                    await asyncio.sleep(0.02)  # let a burst of commits settle into one re-read
                except TimeoutError:
                    pass
        finally:
            for u in unsubs:
                await u()

    async def subscribed(self, subject: str, cb: Any, queue: str | None = None) -> None:
        bus = self.svc.bus
        await bus.wait_connected()
        unsub = await bus.subscribe(subject, cb, queue=queue)
        try:
            await asyncio.Event().wait()
        finally:
            await unsub()

    async def stop(self, _: Service[Any]) -> None:
        self.tunnels.close_all()
        await self.proxy.stop()
        if self.dns is not None:
            await self.dns.stop()


def build_router(node: str) -> Router[Mesh]:
    router: Router[Mesh] = Router("edgemesh")

    @router.reply(names.mesh_subject(node, "state"), name="state")
    async def state(_m: Any, mesh: Mesh) -> dict[str, Any]:
        """The service table, the listeners and the open tunnels (for people and tests)."""
        return {
            "node": mesh.node,
            "loaded": mesh.loaded,
            "services": mesh.table.summary(),
            "listeners": [f"{h}:{p}" for h, p in sorted(mesh.proxy.servers)],
            "listen_errors": {f"{h}:{p}": e for (h, p), e in mesh.proxy.errors.items()},
            "tunnels": len(mesh.tunnels.tunnels),
            "dns": f"{mesh.cfg.dns_host}:{mesh.cfg.dns_port}" if mesh.dns else None,
        }

    return router


def build(settings: Settings | None = None) -> Service[Mesh]:
    settings = settings or Settings()
    assert settings.node, "edgemesh needs the node name (EDGEBUS_NODE)"
    svc: Service[Mesh] = Service("edgemesh", settings, router=build_router(settings.node))
    mesh = Mesh(settings, svc)
    svc.ctx = mesh
    node = settings.node
    svc.on_start(mesh.start_dns)
    svc.task("table", mesh.follow)
    svc.task("tunnel-frames", lambda: mesh.subscribed(names.mesh_tunnel_filter(node), mesh.tunnels.on_frame))
    svc.task("tunnel-open", lambda: mesh.subscribed(names.mesh_subject(node, "open"), mesh.tunnels.on_open, names.queue_group("edgemesh")))
    svc.task("sweep", mesh.tunnels.sweep)
    svc.readiness_check("table", lambda: mesh.loaded)
    svc.on_stop(mesh.stop)
    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("edgemesh", settings)
    run(lambda: build(settings))
