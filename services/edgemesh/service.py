"""edgemesh wiring: the service table, the DNS server, the proxy and the tunnels.

Tasks:

* ``table`` - mirrors Services, Endpoints and the node's pods from metamanager (a local
  listing: works offline, then its commit events of those resources; re-listed every
  ``resync_interval`` and after a reconnect); rebuilds the table and the listeners;
* ``tunnel-frames`` - one subscription for the frames of every tunnel of this node;
* ``tunnel-open`` - tunnel requests from other nodes' edgemesh (queue group);
* ``sweep`` - tunnel keepalives and idle resets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edgebus import names
from edgebus.bus import Router
from edgebus.metaclient import MetaClient, Mirror
from edgebus.objects import ENDPOINTS, PODS, SERVICES
from edgebus.runtime import Service, setup_logging
from services.edgemesh import logic
from services.edgemesh.config import Settings
from services.edgemesh.dns import DnsServer, Resolver, parse_upstreams
from services.edgemesh.proxy import Proxy
from services.edgemesh.tunnel import Tunnels

log = logging.getLogger("edgebus.edgemesh")

WATCHED = (SERVICES.plural, ENDPOINTS.plural, PODS.plural)


class Mesh:
    def __init__(self, settings: Settings, svc: Service[Any]) -> None:
        assert settings.node, "edgemesh needs the node name (EDGEBUS_NODE)"
        self.node = settings.node
        self.cfg = settings.edgemesh
        self.svc = svc
        self.table = logic.Table(self.node)
        self.loaded = False
        self.mirror = Mirror(MetaClient(svc.bus, self.node, timeout=5.0, source="edgemesh"), WATCHED, resync=self.cfg.resync_interval, settle=0.02)
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
        svc.bus.on_state(lambda up: self.mirror.relist() if up else None)

    async def start_dns(self, _: Service[Any]) -> None:
        if self.dns is not None and self.dns._udp is None:
            await self.dns.start()

    async def follow(self) -> None:
        """Keep the table equal to what metamanager holds (level-triggered)."""

        async def rebuild(m: Mirror) -> None:
            self.table = logic.build_table(
                self.node, m.values(SERVICES.plural), m.values(ENDPOINTS.plural), m.values(PODS.plural), self.cfg.service_cidr, frozenset({self.cfg.dns_host})
            )
            await self.proxy.sync(self.table)
            self.loaded = True

        await self.mirror.follow(rebuild)

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
    svc.task("tunnel-open", lambda: mesh.subscribed(names.mesh_open_filter(node), mesh.tunnels.on_open, names.queue_group("edgemesh")))
    svc.task("sweep", mesh.tunnels.sweep)
    svc.readiness_check("table", lambda: mesh.loaded)
    svc.on_stop(mesh.stop)
    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("edgemesh", settings)
    run(lambda: build(settings))
