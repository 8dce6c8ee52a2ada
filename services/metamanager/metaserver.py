"""metaserver: this node's store as a kubectl-compatible API, served from LMDB.

Reads (get, list, watch, Table output, discovery) are answered locally, so they keep
working while the node is cut off from the cloud, and so are pod logs (``kubectl logs
[-f] [--tail N] [-c C]``: asked of this node's edged over the node's own NATS server),
``kubectl exec`` / ``attach`` (websocket v5/v4 or SPDY, :mod:`edgebus.podexec`) and
``kubectl port-forward`` (the websocket tunnel or SPDY, :mod:`edgebus.podportforward`),
all through this node's edged. Writes are forwarded over NATS to the cloud apiserver
(``edgebus.api.request``) and answered with its response; while the link is down they
fail at once with a ``503`` Status ("node is offline; writes need the cloud").

resourceVersions here are this node's local revisions (lists, watches and objects agree,
so a client can list and then watch from the list's revision). On a forwarded write, an
object's local resourceVersion is translated back to the cloud's.

Read your writes: what the cloud answers to an accepted write (the object at its cloud
resourceVersion) is kept in the store (``meta`` marks it ``kept``) and served like a
synced object, and an accepted delete removes the node's copy; a newer version coming
down from the cloud replaces a kept copy, an older one never does (``logic.kept_wins``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus import kube, names, podexec, podportforward
from edgebus.bus import Bus, BusError, NoResponders, NotConnected, RequestTimeout
from edgebus.edgedclient import EdgedClient
from edgebus.envelope import Envelope
from edgebus.errors import ApiError, BadRequest, NotFound, Timeout, Unavailable
from edgebus.kubehttp import Routes, WatchResponse, add_common_routes, status_response
from edgebus.objects import PODS, Resource
from edgebus.objects.selectors import field_predicate, label_predicate
from edgebus.podlogs import log_response
from services.metamanager import logic
from services.metamanager.store import Change, MetaStore

log = logging.getLogger("edgebus.metaserver")

REQUESTS = Counter("edgebus_metaserver_requests_total", "Requests the metaserver answered", ["verb", "code"])
SLOW_WATCHES = Counter("edgebus_metaserver_slow_watches_total", "Watches closed because their client fell too far behind")


class Gone(ApiError):
    code = 410
    reason = "Expired"


#: changes one watch may have queued; a watcher further behind is closed (as Kubernetes
#: closes a slow watcher: the client lists and watches again)
WATCH_BUFFER = 1000


class WatchQueue:
    """The changes one watch has not sent yet, at most ``maxsize``."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Change] = asyncio.Queue(maxsize)
        #: set when the watcher fell ``maxsize`` changes behind: its stream is closed
        self.overflowed = asyncio.Event()


@dataclass
class Changes:
    """In-process fan-out of committed changes to open watches, bounded per watch."""

    queues: set[WatchQueue] = field(default_factory=set)
    buffer: int = WATCH_BUFFER

    def publish(self, ch: Change) -> None:
        for w in list(self.queues):
            try:
                w.queue.put_nowait(ch)
            except asyncio.QueueFull:
                self.queues.discard(w)
                w.overflowed.set()
                SLOW_WATCHES.inc()
                log.warning("closing a watch that fell %d changes behind (the client lists again)", self.buffer)

    def subscribe(self) -> WatchQueue:
        w = WatchQueue(self.buffer)
        self.queues.add(w)
        return w

    def unsubscribe(self, w: WatchQueue) -> None:
        self.queues.discard(w)


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
    #: tells everyone who follows the store (watches, local services) of a committed change
    publish: Callable[[Change], Awaitable[None]] | None = None


def _count(request: Request, resp: Response) -> None:
    REQUESTS.labels(request.method, str(resp.status_code)).inc()


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


def create_app(ctx: MetaServerContext) -> Starlette:
    routes = Routes(_count)
    store = ctx.store

    async def _http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # the only class it handles
        if exc.status_code == 404:
            return status_response(NotFound("the server could not find the requested resource"))
        err = ApiError(str(exc.detail))
        err.code = exc.status_code
        return status_response(err)

    add_common_routes(routes, health=ctx.health, ready=ctx.ready, version_extra={"edgebusNode": ctx.node})

    # -- reads ------------------------------------------------------------------------
    def resolve(request: Request) -> tuple[Resource, str | None]:
        p = request.path_params
        ns = p.get("namespace")
        r = kube.resource_for(p["plural"], namespaced_path=ns is not None, group=p.get("group", ""), version=p.get("version", "v1"))
        if ns is not None:
            kube.check_path_namespace(ns)
        return r, ns

    def objects(r: Resource, ns: str | None, q: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
        lp, fp = label_predicate(q.get("labelSelector")), field_predicate(q.get("fieldSelector"), r.plural)
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
            p = kube.watch_params(q, r.plural)
            w = ctx.changes.subscribe()  # before reading, so nothing falls in between
            return WatchResponse(watch(r, ns, p, w, table=table), stop=ctx.stopping, timeout=p.timeout, server="metaserver", closed=w.overflowed)
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

    async def watch(r: Resource, ns: str | None, p: kube.WatchParams, w: WatchQueue, *, table: bool) -> AsyncIterator[bytes]:
        lp, fp = label_predicate(p.label_selector), field_predicate(p.field_selector)
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
            while not w.overflowed.is_set():
                ch = await w.queue.get()
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
            ctx.changes.unsubscribe(w)

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
        status, answer = int(out["status"]), out.get("body") or b""
        await keep_answer(request, body, status, answer)
        return Response(answer, status_code=status, media_type=(out.get("headers") or {}).get("content-type", "application/json"))

    async def keep_answer(request: Request, body: bytes, status: int, answer: bytes) -> None:
        """Keep what the cloud accepted (read your writes); never fails the write itself."""
        if not 200 <= status < 300:
            return
        p = request.path_params
        sub = p.get("sub")
        try:
            r = kube.resource_for(p["plural"], namespaced_path="namespace" in p, group=p.get("group", ""), version=p.get("version", "v1"))
            obj = json.loads(answer)
        except (ApiError, ValueError, UnicodeDecodeError):
            return
        if sub not in (None, "status"):
            return  # another kind of answer (a Scale, a TokenRequest, an eviction's Status)
        dry = bool(request.query_params.getlist("dryRun")) or _dry_run_body(body)
        k = logic.accepted_write(r, request.method, p.get("namespace"), p.get("name"), status, obj, dry_run=dry)
        if k is None:
            return
        try:
            ch = await store.keep(k)
        except Exception as exc:  # the cloud has it; only the node's copy is missing
            log.warning("the accepted %s of %s %s/%s is not kept on the node: %s", request.method, r.plural, k.namespace, k.name, exc)
            return
        if ch is not None and ctx.publish is not None:
            await ctx.publish(ch)

    async def subresource(request: Request) -> Response:
        sub = request.path_params["sub"]
        raise BadRequest(f"{sub} is not served by a node's metaserver: use the cloud apiserver (edgebus kubeconfig)")

    # -- exec / attach / port-forward: streamed to this node's edged the same way -----------
    async def locate(namespace: str, name: str) -> EdgedClient:
        kube.check_path_namespace(namespace)
        kube.check_path_name(PODS, name)
        pod = store.objects.get(PODS.lmdb_key(namespace, name))
        if pod is None:
            raise NotFound(f'pods "{name}" not found', details={"name": name, "kind": "pods"})
        if (pod.get("spec") or {}).get("nodeName") != ctx.node:
            raise BadRequest(f'pod "{name}" does not run on node {ctx.node}')
        return EdgedClient(ctx.bus, ctx.node, source=f"metaserver@{ctx.node}", timeout=15.0)

    # -- pod logs: from this node's edged, over the node's own NATS server (offline too) ------
    async def pod_log(request: Request) -> Response:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        client = await locate(ns, name)
        try:
            return await log_response(client, ns, name, request.query_params)
        except Unavailable:
            raise Unavailable(f"the edged of node {ctx.node} does not answer (stopped or starting)") from None

    routes.add("/api/v1/namespaces/{namespace}/pods/{name}/log", pod_log, ["GET"])

    podexec.add_routes(routes, locate)
    podportforward.add_routes(routes, locate)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    for base in ("/api/{version}", "/apis/{group}/{version}"):
        routes.add(base + "/namespaces/{namespace}/{plural}/{name}/{sub}", forward, ["PUT", "PATCH", "POST", "DELETE"])
        routes.add(base + "/namespaces/{namespace}/{plural}/{name}/{sub}", subresource, ["GET"])
        routes.add(base + "/namespaces/{namespace}/{plural}/{name}", item, methods)
        routes.add(base + "/namespaces/{namespace}/{plural}", collection, methods)
        routes.add(base + "/{plural}/{name}/{sub}", forward, ["PUT", "PATCH", "POST", "DELETE"])
        routes.add(base + "/{plural}/{name}/{sub}", subresource, ["GET"])
        routes.add(base + "/{plural}/{name}", item, methods)
        routes.add(base + "/{plural}", collection, methods)
    return Starlette(routes=routes.routes, exception_handlers={StarletteHTTPException: _http_error})


def _tombstone(r: Resource, ch: Change) -> dict[str, Any]:
    return {"apiVersion": r.api_version, "kind": r.kind, "metadata": {"name": ch.name, "namespace": ch.namespace, "resourceVersion": str(ch.revision)}}


def _dry_run_body(body: bytes) -> bool:
    """A DeleteOptions (or any body) asking for ``dryRun``."""
    if not body.strip():
        return False
    try:
        obj = json.loads(body)
    except ValueError:
        return False
    return isinstance(obj, dict) and bool(obj.get("dryRun"))


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

