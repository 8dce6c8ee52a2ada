"""metaserver: this node's store as a kubectl-compatible API, served from LMDB.

Reads (get, list, watch, Table output, discovery) are answered locally, so they keep
working while the node is cut off from the cloud. Writes are forwarded over NATS to the
cloud apiserver (``edgebus.api.request``) and answered with its response; while the link
is down they fail at once with a ``503`` Status ("node is offline; writes need the cloud").

resourceVersions here are this node's local revisions (lists, watches and objects agree,
so a client can list and then watch from the list's revision). On a forwarded write, an
object's local resourceVersion is translated back to the cloud's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from prometheus_client import Counter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus import kube, names
from edgebus.bus import Bus, BusError, NoResponders, NotConnected, RequestTimeout
from edgebus.envelope import Envelope
from edgebus.errors import ApiError, BadRequest, NotFound, Timeout, Unavailable
from edgebus.kubehttp import WatchResponse, add_common_routes, status_response, status_route
from edgebus.objects import Resource
from edgebus.objects.selectors import field_predicate, label_predicate
from services.metamanager.store import Change, MetaStore

log = logging.getLogger("edgebus.metaserver")

REQUESTS = Counter("edgebus_metaserver_requests_total", "Requests the metaserver answered", ["verb", "code"])


class Gone(ApiError):
    code = 410
    reason = "Expired"


@dataclass
class Changes:
    """In-process fan-out of committed changes to open watches."""

    queues: set[asyncio.Queue[Change]] = field(default_factory=set)

    def publish(self, ch: Change) -> None:
        for q in list(self.queues):
            q.put_nowait(ch)

    def subscribe(self) -> asyncio.Queue[Change]:
        q: asyncio.Queue[Change] = asyncio.Queue()
        self.queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Change]) -> None:
        self.queues.discard(q)


@dataclass
class MetaServerContext:
    node: str
    store: MetaStore
    bus: Bus
    changes: Changes
    stopping: asyncio.Event
    health: Callable[[], dict[str, object]]
    ready: Callable[[], dict[str, object]]
    forward_timeout: float = 10.0


_Route = status_route(lambda request, resp: REQUESTS.labels(request.method, str(resp.status_code)).inc())


def local_view(store: MetaStore, key: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as served here: with the node's own status and its local resourceVersion."""
    out = store.with_status(key, obj)
    meta = store.meta_of(key) or {}
    st = store.status.get(key) or {}
    rev = max(int(meta.get("revision") or 0), int(st.get("revision") or 0))
    md = dict(out.get("metadata") or {})
    md["resourceVersion"] = str(rev)
    return {**out, "metadata": md}


def _matches(r: Resource, ns: str | None, key: str) -> bool:
    prefix = r.lmdb_prefix(ns if r.namespaced else None)
    return key.startswith(prefix)


def create_app(ctx: MetaServerContext) -> FastAPI:
    app = FastAPI(title=f"edgebus metaserver ({ctx.node})", openapi_url=None, docs_url=None, redoc_url=None)
    app.router.route_class = _Route
    store = ctx.store

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return status_response(NotFound("the server could not find the requested resource"))
        err = ApiError(str(exc.detail))
        err.code = exc.status_code
        return status_response(err)

    add_common_routes(app, health=ctx.health, ready=ctx.ready, version_extra={"edgebusNode": ctx.node})

    # -- reads ------------------------------------------------------------------------
    def resolve(request: Request) -> tuple[Resource, str | None]:
        p = request.path_params
        ns = p.get("namespace")
        r = kube.resource_for(p["plural"], namespaced_path=ns is not None, group=p.get("group", ""), version=p.get("version", "v1"))
        if ns is not None:
            kube.check_path_namespace(ns)
        return r, ns

    def objects(r: Resource, ns: str | None, q: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
        lp, fp = label_predicate(q.get("labelSelector")), field_predicate(q.get("fieldSelector"))
        revision = store.revision()
        out = []
        for key, obj in store.objects.items(r.lmdb_prefix(ns if r.namespaced else None)):
            view = local_view(store, key, obj)
            if lp(view) and fp(view):
                out.append(view)
        return out, revision

    async def collection(request: Request) -> Response:
        if request.method != "GET":
            return await forward(request)
        r, ns = resolve(request)
        q = dict(request.query_params)
        table = kube.wants_table(request.headers.get("accept"))
        if kube.parse_bool(q.get("watch")):
            p = kube.watch_params(q)
            return WatchResponse(watch(r, ns, p, table=table), stop=ctx.stopping, timeout=p.timeout, server="metaserver")
        items, rev = objects(r, ns, q)
        return JSONResponse(kube.table_body(r, items, rev) if table else kube.list_body(r, items, rev))

    async def item(request: Request) -> Response:
        if request.method != "GET":
            return await forward(request)
        r, ns = resolve(request)
        name = request.path_params["name"]
        kube.check_path_name(r, name)
        key = r.lmdb_key(ns if r.namespaced else None, name)
        obj = store.objects.get(key)
        if obj is None:
            raise NotFound(f'{r.plural} "{name}" not found', details={"name": name, "kind": r.plural})
        view = local_view(store, key, obj)
        return JSONResponse(kube.table_body(r, [view], None) if kube.wants_table(request.headers.get("accept")) else view)

    async def watch(r: Resource, ns: str | None, p: kube.WatchParams, *, table: bool) -> AsyncIterator[bytes]:
        lp, fp = label_predicate(p.label_selector), field_predicate(p.field_selector)
        queue = ctx.changes.subscribe()  # before reading, so nothing falls in between
        sent: set[str] = set()

        def line(typ: str, obj: dict[str, Any]) -> bytes:
            return kube.watch_line(typ, kube.table_body(r, [obj]) if table else obj)

        try:
            rev = store.revision()
            if p.from_revision is None:
                for key, obj in store.objects.items(r.lmdb_prefix(ns if r.namespaced else None)):
                    view = local_view(store, key, obj)
                    if lp(view) and fp(view):
                        sent.add(key)
                        yield line("ADDED", view)
            else:
                # the client listed at from_revision: it knows every object there was
                sent.update(k for k, _ in store.objects.items(r.lmdb_prefix(ns if r.namespaced else None)))
                for ev in replay(r, ns, p.from_revision):
                    typ, key, view = ev
                    if typ == "DELETED" or (lp(view) and fp(view)):
                        yield line(typ, view)
                        if typ != "DELETED":
                            sent.add(key)
            while True:
                ch = await queue.get()
                if ch.revision <= rev or not _matches(r, ns, ch.key):
                    continue
                if ch.type == "DELETED":
                    if ch.key in sent:
                        sent.discard(ch.key)
                        yield line("DELETED", _tombstone(r, ch))
                    continue
                view = local_view(store, ch.key, ch.object or {})
                md = dict(view.get("metadata") or {})
                md["resourceVersion"] = str(ch.revision)
                view = {**view, "metadata": md}
                if lp(view) and fp(view):
                    typ = "MODIFIED" if ch.key in sent and ch.type != "ADDED" else "ADDED"
                    sent.add(ch.key)
                    yield line(typ, view)
                elif ch.key in sent:
                    sent.discard(ch.key)
                    yield line("DELETED", view)
        finally:
            ctx.changes.unsubscribe(queue)

    def replay(r: Resource, ns: str | None, since: int) -> list[tuple[str, str, dict[str, Any]]]:
        """The changes after local revision ``since``, each object's latest state once."""
        log_ = store.changes(since, 100_000)
        oldest = store.changelog.items_from("", 1)
        if oldest and since < int(oldest[0][0]) - 1:
            raise Gone(f"too old resource version: {since} ({int(oldest[0][0]) - 1})")
        latest: dict[str, int] = {}
        for c in log_:
            if _matches(r, ns, c["key"]):
                latest[c["key"]] = c["revision"]
        out = []
        for key, _rev in sorted(latest.items(), key=lambda kv: kv[1]):
            obj = store.objects.get(key)
            if obj is None:
                _, ns_, name = key.rsplit("/", 2)
                out.append(("DELETED", key, {"apiVersion": r.api_version, "kind": r.kind, "metadata": {"name": name, "namespace": None if ns_ == names.CLUSTER_NS else ns_}}))
            else:
                out.append(("MODIFIED", key, local_view(store, key, obj)))
        return out

    # -- writes: forwarded to the cloud ---------------------------------------------------
    async def forward(request: Request) -> Response:
        body = await request.body()
        if body and request.method in ("PUT", "PATCH"):
            body = _cloud_rv(store, request, body)
        req = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept")},
            "body": body,
        }
        env = Envelope.new(source=f"metaserver@{ctx.node}", operation="request", resource="api", content=req, sync=True)
        try:
            reply = await ctx.bus.request(names.api_node_subject(ctx.node), env, timeout=ctx.forward_timeout)
        except (NoResponders, NotConnected):
            raise Unavailable(f"node {ctx.node} is offline; writes need the cloud") from None
        except RequestTimeout:
            raise Timeout(f"the cloud did not answer within {ctx.forward_timeout:.0f}s; writes need the cloud") from None
        except BusError as exc:
            raise Unavailable(f"writes need the cloud: {exc}") from None
        out = Envelope.decode(reply.data).content
        if not isinstance(out, dict) or "status" not in out:
            raise Unavailable("the cloud answered the forwarded write with something unexpected")
        return Response(out.get("body") or b"", status_code=int(out["status"]), media_type=(out.get("headers") or {}).get("content-type", "application/json"))

    async def subresource(request: Request) -> Response:
        sub = request.path_params["sub"]
        raise BadRequest(f"{sub} is not served by a node's metaserver: use the cloud apiserver (edgebus kubeconfig), or edgebus {'logs' if sub == 'log' else sub}")

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    for base in ("/api/{version}", "/apis/{group}/{version}"):
        app.add_api_route(base + "/namespaces/{namespace}/{plural}/{name}/{sub}", forward, methods=["PUT", "PATCH", "POST", "DELETE"])
        app.add_api_route(base + "/namespaces/{namespace}/{plural}/{name}/{sub}", subresource, methods=["GET"])
        app.add_api_route(base + "/namespaces/{namespace}/{plural}/{name}", item, methods=methods)
        app.add_api_route(base + "/namespaces/{namespace}/{plural}", collection, methods=methods)
        app.add_api_route(base + "/{plural}/{name}/{sub}", forward, methods=["PUT", "PATCH", "POST", "DELETE"])
        app.add_api_route(base + "/{plural}/{name}/{sub}", subresource, methods=["GET"])
        app.add_api_route(base + "/{plural}/{name}", item, methods=methods)
        app.add_api_route(base + "/{plural}", collection, methods=methods)
    return app


def _tombstone(r: Resource, ch: Change) -> dict[str, Any]:
    return {"apiVersion": r.api_version, "kind": r.kind, "metadata": {"name": ch.name, "namespace": ch.namespace, "resourceVersion": str(ch.revision)}}


def _cloud_rv(store: MetaStore, request: Request, body: bytes) -> bytes:
    """Replace an object's local resourceVersion by the cloud's before forwarding a write."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body
    md = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(md, dict) or not md.get("resourceVersion"):
        return body
    p = request.path_params
    try:
        r = kube.resource_for(p["plural"], namespaced_path="namespace" in p, group=p.get("group", ""), version=p.get("version", "v1"))
    except ApiError:
        return body
    key = r.lmdb_key(p.get("namespace") if r.namespaced else None, p["name"])
    meta = store.meta_of(key) or {}
    st = store.status.get(key) or {}
    local = max(int(meta.get("revision") or 0), int(st.get("revision") or 0))
    if str(md["resourceVersion"]) == str(local) and meta.get("rv"):
        md["resourceVersion"] = str(meta["rv"])
        return json.dumps(obj).encode()
    return body

