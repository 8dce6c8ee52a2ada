"""metamanager wiring: the node's LMDB store of desired state, fed from EDGEBUS_EDGE_DOWN."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from edgebus import topology
from edgebus.runtime import Service, setup_logging
from edgebus.runtime.ops import serve_activated
from edgebus.auth import Decision
from services.metamanager.auth import LocalSecurity
from services.metamanager.config import Settings
from services.metamanager.handlers import Ctx, build_router, publish_change
from services.metamanager.store import Change, MetaStore


log = logging.getLogger("edgebus.metamanager")


def build(settings: Settings | None = None) -> Service[Ctx]:
    settings = settings or Settings()
    if not settings.node:
        raise SystemExit("metamanager needs EDGEBUS_NODE (the name of this edge node)")
    mm = settings.metamanager
    router = build_router(settings.node, batch=mm.batch, ack_wait=mm.ack_wait)
    svc: Service[Ctx] = Service("metamanager", settings, router=router)
    store = MetaStore(Path(mm.data_dir), map_size=mm.map_size_mb << 20, max_map_size=mm.max_map_size_mb << 20)
    svc.ctx = Ctx(node=settings.node, bus=svc.bus, store=store)

    @svc.on_start
    async def ensure_streams(s: Service[Ctx]) -> None:
        assert settings.node
        await topology.ensure_edge_streams(s.bus, settings.node, settings.cloud_domain)

    if mm.metaserver_port:
        http_stop = asyncio.Event()
        secure = bool(mm.admin_token_file or mm.auth.token_keys)
        local = LocalSecurity(settings.node, store, mm.auth, admin_token_file=mm.admin_token_file) if secure else None
        if local is not None:
            svc.ctx.listeners.append(local.on_change)
            if not mm.metaserver_tls_cert_file:
                log.warning("the metaserver authenticates over plain HTTP: kubectl sends no credentials without HTTPS (set metamanager.metaserver_tls_cert_file)")
        apps: list[object] = []

        def metaserver_app() -> object:
            # the metaserver's framework (Starlette, the OpenAPI documents) is imported at its
            # first connection: until someone uses kubectl against the node it costs nothing
            if not apps:
                from edgebus.auth.guard import Guard
                from edgebus.kubehttp import ProtobufBodies
                from services.metamanager.metaserver import Changes, MetaServerContext, create_app

                changes = Changes()
                assert svc.ctx is not None and settings.node
                svc.ctx.listeners.append(changes.publish)
                mmctx = svc.ctx

                async def publish(ch: Change) -> None:
                    await publish_change(mmctx, ch)

                ctx = MetaServerContext(
                    node=settings.node, store=store, bus=svc.bus, changes=changes, stopping=svc.stopping, health=svc.health, ready=svc.ready, publish=publish
                )
                apps.append(
                    Guard(
                        ProtobufBodies(create_app(ctx)),
                        local.authenticate if local is not None else None,
                        local.authorize if local is not None else _allow,
                        server="metaserver",
                        anonymous_paths=frozenset(mm.auth.anonymous_paths),
                    )
                )
            return apps[0]

        tls = (mm.metaserver_tls_cert_file, mm.metaserver_tls_key_file) if mm.metaserver_tls_cert_file else None
        svc.task("metaserver", lambda: serve_activated(metaserver_app, mm.metaserver_host, mm.metaserver_port, http_stop, tls=tls))

        @svc.on_stop
        async def stop_metaserver(s: Service[Ctx]) -> None:
            http_stop.set()

    @svc.on_stop
    async def close_store(s: Service[Ctx]) -> None:
        store.close()

    return svc


async def _allow(_user: object, _attrs: object) -> Decision:
    return Decision(True, "authentication is off")


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("metamanager", settings)
    run(lambda: build(settings))
