"""Wiring: one NATS connection, the object store on it, and the REST API served by uvicorn.

* start hook ``ensure-store``: the object KV bucket and the system namespaces (retried until
  JetStream answers);
* supervised task ``http``: the Starlette app on ``apiserver.host:apiserver.port``, which also
  answers ``/healthz``, ``/livez``, ``/readyz`` and ``/metrics``;
* route ``api-request`` (``edgebus.api.node.*``, pool): the same app over NATS, for the
  edge metaservers' forwarded writes, each as the node its subject names;
* supervised task ``security``: follows the RBAC objects, ServiceAccounts and Namespaces
  (and pods and Devices for the Node authorizer) and creates missing ``default``
  ServiceAccounts; start hook ``ensure-store`` also creates the default RBAC policy;
* every request (HTTP and NATS) passes :class:`edgebus.auth.guard.Guard`: authenticated
  when ``apiserver.auth.token_keys`` names a key, then authorized (Node, RBAC);
* the web console under ``/console`` (``apiserver.console``, :mod:`services.apiserver.console`):
  outside the guard, since it authenticates with its session cookie, and every request it
  makes goes through the guarded app as the signed-in user;
* on stop: watches end, uvicorn finishes in-flight requests, then the bus closes.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import ASGIApp

from edgebus.auth.guard import Guard
from edgebus.kubehttp import ProtobufBodies
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service
from edgebus.runtime.ops import serve_http
from services.apiserver.admission import Admission
from services.apiserver.config import Settings
from services.apiserver.http import ApiContext, create_app
from services.apiserver.join import add_join_routes
from services.apiserver.relay import add_relay
from services.apiserver.security import Security, ensure_policy

log = logging.getLogger("edgebus.apiserver")

NAME = "apiserver"


def build(settings: Settings | None = None) -> Service[ApiContext]:
    settings = settings or Settings()
    svc: Service[ApiContext] = Service(NAME, settings)
    api = settings.apiserver
    store = ObjectStore(svc.bus, replicas=api.kv_replicas, service_cidr=settings.service_cidr)
    security = Security(store, api.auth, signing_key=api.signing_key)
    admission = Admission(store, security, pod_security_default=api.pod_security_default)
    ctx = ApiContext(store=store, stopping=svc.stopping, health=svc.health, ready=svc.ready, security=security, admission=admission, max_token_seconds=api.max_token_seconds)
    svc.ctx = ctx
    inner = create_app(ctx, lambda routes: add_join_routes(routes, svc.bus, ca_file=api.ca_file))
    app = Guard(
        ProtobufBodies(inner),
        security.authenticate if security.enabled else None,
        security.authorize,
        server=NAME,
        anonymous_paths=frozenset(api.auth.anonymous_paths),
    )
    add_relay(svc.router, app)
    served: ASGIApp = app
    if api.console:
        from services.apiserver.console.app import Console, with_console

        served = with_console(app, Console(app, svc.stopping).app())
    if security.enabled and not api.tls_cert_file:
        log.warning("authentication is on over plain HTTP: kubectl sends no credentials without HTTPS (set apiserver.tls_cert_file / tls_key_file)")
    if security.enabled:
        log.info("authentication on: %d verification key(s); tokens %s", len(security.verifier.key_ids) if security.verifier else 0, "issued" if security.issuer else "not issued")
    listening = asyncio.Event()
    idle = asyncio.Event()  # set while the http task is not running
    idle.set()

    async def ensure_store(_: Service[ApiContext]) -> None:
        await store.ensure()
        await store.ensure_system_namespaces()
        await ensure_policy(store)

    async def serve_api() -> None:
        listening.clear()
        idle.clear()
        try:
            await serve_http(
                served, api.host, api.port, svc.stopping, started=listening, tls=(api.tls_cert_file, api.tls_key_file) if api.tls_cert_file else None
            )
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
    svc.task("security", security.follow)
    svc.on_stop(drain_http)
    svc.readiness_check("http", listening.is_set)
    svc.readiness_check("authorization", security.ready)
    return svc
