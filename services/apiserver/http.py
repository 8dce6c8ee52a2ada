"""The REST API: thin Starlette routes over :class:`edgebus.objectstore.ObjectStore`.

Routes are generic over the resources in :data:`edgebus.objects.RESOURCES`, looked up by
plural. Every :class:`edgebus.errors.ApiError` becomes its Kubernetes ``Status`` body with
its HTTP code; bus trouble is a 503; anything unexpected is logged and a 500 ``Status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus.errors import AlreadyExists, ApiError, BadRequest, Conflict, NotFound
from edgebus.objects import RESOURCES, Resource, rv_of, ssa
from edgebus.objectstore import STATUS_SUBRESOURCE, ObjectStore
from services.apiserver import exec as podexec
from services.apiserver import eventviews, fields, logic, metrics, pods, portforward, reviews, scale, subresources, views
from services.apiserver.admission import Admission
from services.apiserver.security import Security
from edgebus.kubehttp import Routes, WatchResponse, add_common_routes

log = logging.getLogger("edgebus.apiserver")

REQUESTS = Counter("edgebus_apiserver_requests_total", "REST API requests answered", ["verb", "resource", "code"])

PATCH_RETRIES = 5


@dataclass
class ApiContext:
    """What the routes need, passed in explicitly."""

    store: ObjectStore
    stopping: asyncio.Event
    health: Callable[[], dict[str, object]]
    ready: Callable[[], dict[str, object]]
    #: authentication and authorization (None: a bare app, as in unit tests)
    security: Security | None = None
    admission: Admission | None = None
    max_token_seconds: int = 86400


def status_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.status(), status_code=exc.code)


def _count(request: Request, resp: Response) -> None:
    plural = request.path_params.get("plural", "")
    REQUESTS.labels(request.method, plural if plural in RESOURCES or not plural else "unknown", str(resp.status_code)).inc()


def _json(body: dict[str, Any], code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=code)


def create_app(ctx: ApiContext, more: Callable[[Routes], None] | None = None) -> Starlette:
    """The apiserver's ASGI app; ``more`` adds routes after all of the API's own."""
    routes = Routes(_count)
    store = ctx.store

    async def _http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)  # the only class it handles
        if exc.status_code == 405:
            return status_response(logic.MethodNotAllowed("the server does not allow this method on the requested resource"))
        if exc.status_code == 404:
            return status_response(NotFound("the server could not find the requested resource"))
        err = ApiError(str(exc.detail))
        err.code = exc.status_code
        return status_response(err)

    # -- ops and discovery ------------------------------------------------------------
    add_common_routes(routes, health=ctx.health, ready=ctx.ready, views=True)

    # -- resolving a URL --------------------------------------------------------------
    def collection(request: Request) -> tuple[Resource, str | None]:
        ns = request.path_params.get("namespace")
        p = request.path_params
        r = logic.resource_for(p["plural"], namespaced_path=ns is not None, group=p.get("group", ""), version=p.get("version", "v1"))
        if ns is not None:
            logic.check_path_namespace(ns)
        return r, ns

    def item(request: Request, sub: str | None = None) -> tuple[Resource, str | None, str]:
        r, ns = collection(request)
        if (r.namespaced and ns is None) or (sub is not None and r.plural not in STATUS_SUBRESOURCE):
            raise NotFound("the server could not find the requested resource", details={"kind": r.plural})
        return r, ns, request.path_params["name"]

    # -- collections ------------------------------------------------------------------
    async def list_or_watch(request: Request) -> Response:
        r, ns = collection(request)
        q = request.query_params
        table = logic.wants_table(request.headers.get("accept"))
        if logic.parse_bool(q.get("watch")):
            return watch(r, ns, logic.watch_params(dict(q), r.plural), table=table)
        fs = eventviews.field_selector(r, q.get("fieldSelector") or None)
        items, rev = await store.list(eventviews.storage(r), ns, label_selector=q.get("labelSelector") or None, field_selector=fs)
        return _json(logic.table_body(r, items, rev) if table else logic.list_body(r, [eventviews.out(r, o) for o in items], rev))

    def watch(r: Resource, ns: str | None, p: logic.WatchParams, *, table: bool) -> Response:
        fs = eventviews.field_selector(r, p.field_selector)

        async def events() -> AsyncIterator[bytes]:
            it = store.watch([eventviews.storage(r)], ns, from_revision=p.from_revision, label_selector=p.label_selector, field_selector=fs)
            async with aclosing(it):
                async for ev in it:
                    yield logic.watch_line(ev.type, logic.table_body(r, [ev.object]) if table else eventviews.out(r, ev.object))

        return WatchResponse(events(), stop=ctx.stopping, timeout=p.timeout)

    async def create(request: Request) -> Response:
        r, ns = collection(request)
        if r.namespaced and ns is None:
            raise logic.MethodNotAllowed(f"{r.plural} are namespaced: create them under /api/v1/namespaces/{{namespace}}/{r.plural}")
        body, dups = fields.parse_body(await fields.read_body(request), request.headers.get("content-type"))
        logic.check_create(r, body, ns)
        warnings = fields.check(request, r, body, dups)
        ssa.record_update(None, body, logic.field_manager(request.query_params, request.headers.get("user-agent")), api_version=r.api_version)
        if ctx.admission is not None:
            await ctx.admission.admit(request, r, _with_namespace(r, body, ns))
        created = await store.create(eventviews.storage(r), eventviews.into(r, body), namespace=ns, warnings=warnings, dry_run=fields.dry_run(request))
        return fields.respond(eventviews.out(r, created), 201, warnings)

    # -- objects ----------------------------------------------------------------------
    def get_object(sub: str | None) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            r, ns, name = item(request, sub)
            logic.check_path_name(r, name)
            obj = await store.get(eventviews.storage(r), ns, name)
            return _json(logic.table_body(r, [obj], rv_of(obj)) if logic.wants_table(request.headers.get("accept")) else eventviews.out(r, obj))

        return endpoint

    def put_object(sub: str | None) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            r, ns, name = item(request, sub)
            body, dups = fields.parse_body(await fields.read_body(request), request.headers.get("content-type"))
            logic.check_update(r, body, ns, name)
            warnings = fields.check(request, r, body, dups)
            record: Callable[[dict[str, Any], dict[str, Any]], None] | None = None
            if sub is None:
                manager = logic.field_manager(request.query_params, request.headers.get("user-agent"))
                if eventviews.storage(r) is r:  # the managed fields from the current object the update reads anyway

                    def record(current: dict[str, Any], new: dict[str, Any]) -> None:
                        ssa.record_update(current, new, manager, api_version=r.api_version)
                else:
                    with contextlib.suppress(NotFound):
                        ssa.record_update(await store.get(r, ns, name), body, manager, api_version=r.api_version)
            if ctx.admission is not None:
                await ctx.admission.admit(request, r, _with_namespace(r, body, ns), subresource=sub)
            updated = await store.update(
                eventviews.storage(r), eventviews.into(r, body), namespace=ns, subresource=sub, warnings=warnings, dry_run=fields.dry_run(request), before=record
            )
            return fields.respond(eventviews.out(r, updated), 200, warnings)

        return endpoint

    def patch_object(sub: str | None) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            r, ns, name = item(request, sub)
            content_type = request.headers.get("content-type")
            logic.patch_type(content_type)
            logic.check_path_name(r, name)
            body = await fields.read_body(request)
            kind = logic.patch_type(content_type)
            if kind == logic.APPLY_PATCH:
                return await server_side_apply(request, r, ns, name, sub, body)
            dups = [] if kind == logic.JSON_PATCH else fields.duplicates(body)
            manager = logic.field_manager(request.query_params, request.headers.get("user-agent"))
            for attempt in range(PATCH_RETRIES):
                current = eventviews.out(r, await store.get(eventviews.storage(r), ns, name))
                new = logic.apply_patch(content_type, current, body)
                if sub is None:
                    ssa.record_update(current, new, manager, api_version=r.api_version)
                logic.check_update(r, new, ns, name)
                warnings = fields.check(request, r, new, dups, current=current)
                if ctx.admission is not None:
                    await ctx.admission.admit(request, r, new, current=current, subresource=sub)
                pinned = rv_of(new) != rv_of(current)  # the patch itself names a resourceVersion
                if not pinned:
                    new.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
                try:
                    updated = await store.update(eventviews.storage(r), eventviews.into(r, new), namespace=ns, subresource=sub, warnings=warnings, dry_run=fields.dry_run(request))
                    return fields.respond(eventviews.out(r, updated), 200, warnings)
                except Conflict:
                    if pinned or attempt == PATCH_RETRIES - 1:
                        raise
            raise AssertionError("unreachable")

        return endpoint

    async def server_side_apply(request: Request, r: Resource, ns: str | None, name: str, sub: str | None, body: bytes) -> Response:
        """``PATCH`` with ``application/apply-patch+yaml`` (``kubectl apply --server-side``)."""
        q = request.query_params
        if not q.get("fieldManager"):
            raise BadRequest("PATCH requests with the apply patch type must have a fieldManager")
        applied = logic.parse_apply(body)
        if applied.get("apiVersion") not in (None, r.api_version) or applied.get("kind") not in (None, r.kind):
            raise BadRequest(f"the apply configuration is a {applied.get('apiVersion')}/{applied.get('kind')}, not a {r.api_version}/{r.kind}")
        force = logic.parse_bool(q.get("force"))
        dry = fields.dry_run(request)
        for attempt in range(PATCH_RETRIES):
            try:
                current: dict[str, Any] | None = await store.get(r, ns, name)
            except NotFound:
                current = None
            new = ssa.apply(current, applied, str(q["fieldManager"]), force=force, api_version=r.api_version)
            new["apiVersion"], new["kind"] = r.api_version, r.kind
            logic.check_update(r, new, ns, name)
            warnings = fields.check(request, r, new, [], current=current)
            if ctx.admission is not None:
                await ctx.admission.admit(request, r, _with_namespace(r, new, ns), current=current, subresource=sub)
            try:
                if current is None:
                    return fields.respond(await store.create(r, new, namespace=ns, warnings=warnings, dry_run=dry), 201, warnings)
                new.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
                return fields.respond(await store.update(r, new, namespace=ns, subresource=sub, warnings=warnings, dry_run=dry), 200, warnings)
            except (Conflict, AlreadyExists):
                if attempt == PATCH_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def delete_object(request: Request) -> Response:
        dry = fields.dry_run(request)
        r, ns, name = item(request)
        logic.check_path_name(r, name)
        raw = await fields.read_body(request)
        opts = None
        if raw.strip():
            opts = logic.parse_json(raw)
            if not isinstance(opts, dict):
                raise BadRequest("DeleteOptions must be a JSON object")
            dry = fields.dry_run(request, opts) or dry
        rv, grace, uid = pods.delete_options(opts, dict(request.query_params))
        propagation = scale.propagation_policy(opts, dict(request.query_params))
        deleted = await store.delete(eventviews.storage(r), ns, name, resource_version=rv, grace_period_seconds=grace, uid=uid, propagation=propagation, dry_run=dry)
        return _json(eventviews.out(r, deleted))

    # Order matters: the first full match wins, and /api/v1/namespaces/{name}[/status]
    # (a Namespace) must not be taken for a collection inside a namespace. The same routes
    # serve the core group (/api/v1) and the named groups (/apis/{group}/{version}). The
    # core group's come first (routes are tried one by one and most requests are for it):
    # no core subresource below has their shape (the object's own path plus "status").
    _add_object_routes(routes, "/api/v1", get_object, put_object, patch_object, delete_object, list_or_watch, create)
    pods.add_routes(routes, store)
    podexec.add_routes(routes, store)
    portforward.add_routes(routes, store)
    if ctx.security is not None:
        reviews.add_routes(routes, store, ctx.security, max_token_seconds=ctx.max_token_seconds)
    metrics.add_routes(routes, store)  # metrics.k8s.io: before the generic routes
    views.add_routes(routes, store, ctx.stopping)  # before the generic routes: v1alpha2 devices, DeviceStatus
    scale.add_routes(routes, store)
    subresources.add_routes(routes, store)
    _add_object_routes(routes, "/apis/{group}/{version}", get_object, put_object, patch_object, delete_object, list_or_watch, create)  # after the named groups' own
    if more is not None:
        more(routes)
    return Starlette(routes=routes.routes, exception_handlers={StarletteHTTPException: _http_error})


def _with_namespace(r: Resource, body: dict[str, Any], ns: str | None) -> dict[str, Any]:
    """The object as it will be stored, as far as admission cares: in its namespace."""
    if not r.namespaced or not isinstance(body.get("metadata"), dict) or body["metadata"].get("namespace"):
        return body
    return {**body, "metadata": {**body["metadata"], "namespace": ns or "default"}}


def _add_object_routes(
    routes: Routes,
    prefix: str,
    get_object: Callable[[str | None], Callable[[Request], Awaitable[Response]]],
    put_object: Callable[[str | None], Callable[[Request], Awaitable[Response]]],
    patch_object: Callable[[str | None], Callable[[Request], Awaitable[Response]]],
    delete_object: Callable[[Request], Awaitable[Response]],
    list_or_watch: Callable[[Request], Awaitable[Response]],
    create: Callable[[Request], Awaitable[Response]],
) -> None:
    ns_coll = prefix + "/namespaces/{namespace}/{plural}"
    cl_coll = prefix + "/{plural}"
    routes.add(ns_coll + "/{name}/status", get_object("status"), ["GET"])
    routes.add(ns_coll + "/{name}/status", put_object("status"), ["PUT"])
    routes.add(ns_coll + "/{name}/status", patch_object("status"), ["PATCH"])
    routes.add(ns_coll + "/{name}", get_object(None), ["GET"])
    routes.add(ns_coll + "/{name}", put_object(None), ["PUT"])
    routes.add(ns_coll + "/{name}", patch_object(None), ["PATCH"])
    routes.add(ns_coll + "/{name}", delete_object, ["DELETE"])
    routes.add(cl_coll + "/{name}/status", get_object("status"), ["GET"])
    routes.add(cl_coll + "/{name}/status", put_object("status"), ["PUT"])
    routes.add(cl_coll + "/{name}/status", patch_object("status"), ["PATCH"])
    routes.add(ns_coll, list_or_watch, ["GET"])
    routes.add(ns_coll, create, ["POST"])
    routes.add(cl_coll + "/{name}", get_object(None), ["GET"])
    routes.add(cl_coll + "/{name}", put_object(None), ["PUT"])
    routes.add(cl_coll + "/{name}", patch_object(None), ["PATCH"])
    routes.add(cl_coll + "/{name}", delete_object, ["DELETE"])
    routes.add(cl_coll, list_or_watch, ["GET"])
    routes.add(cl_coll, create, ["POST"])
