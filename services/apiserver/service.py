"""Wiring: one NATS connection, the object store on it, and the REST API served by uvicorn.

* start hook ``ensure-store``: the object KV bucket and the system namespaces (retried until
  JetStream answers);
* supervised task ``http``: the FastAPI app on ``apiserver.host:apiserver.port``, which also
  answers ``/healthz``, ``/livez``, ``/readyz`` and ``/metrics``;
* route ``api-request`` (``edgebus.api.request``, pool): the same app over NATS, for the
  edge metaservers' forwarded writes;
* on stop: watches end, uvicorn finishes in-flight requests, then the bus closes.
"""

from __future__ import annotations

import asyncio
import logging

from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service
from edgebus.runtime.ops import serve_http
from services.apiserver.config import Settings
from services.apiserver.http import ApiContext, create_app
from services.apiserver.join import add_join_routes
from services.apiserver.relay import add_relay

log = logging.getLogger("edgebus.apiserver")

NAME = "apiserver"


def build(settings: Settings | None = None) -> Service[ApiContext]:
    settings = settings or Settings()
    svc: Service[ApiContext] = Service(NAME, settings)
    store = ObjectStore(svc.bus, replicas=settings.apiserver.kv_replicas)
    ctx = ApiContext(store=store, stopping=svc.stopping, health=svc.health, ready=svc.ready)
    svc.ctx = ctx
    app = create_app(ctx)
    add_join_routes(app, svc.bus, ca_file=settings.apiserver.ca_file)
    add_relay(svc.router, app)
    listening = asyncio.Event()
    idle = asyncio.Event()  # set while the http task is not running
    idle.set()

    async def ensure_store(_: Service[ApiContext]) -> None:
        await store.ensure()
        await store.ensure_system_namespaces()

    async def serve_api() -> None:
        listening.clear()
        idle.clear()
        try:
            tls = (settings.apiserver.tls_cert_file, settings.apiserver.tls_key_file) if settings.apiserver.tls_cert_file and settings.apiserver.tls_key_file else None
            await serve_http(app, settings.apiserver.host, settings.apiserver.port, svc.stopping, started=listening, tls=tls)
        finally:
            listening.clear()
            idle.set()

    async def drain_http(_: Service[ApiContext]) -> None:
        # ``stopping`` is set: watches are ending and uvicorn is shutting down. Let it
        # finish in-flight requests before the supervisor cancels the task.
        try:
            await asyncio.wait_for(idle.wait(), settings.drain_timeout)
        except TimeoutError:
            log.warning("HTTP server still busy after %.0fs; stopping it", settings.drain_timeout)

    svc.on_start(ensure_store)
    svc.task("http", serve_api)
    svc.on_stop(drain_http)
    svc.readiness_check("http", listening.is_set)
    return svc
