"""The REST API: thin FastAPI routes over :class:`edgebus.objectstore.ObjectStore`.

Routes are generic over the resources in :data:`edgebus.objects.RESOURCES`, looked up by
plural. Every :class:`edgebus.errors.ApiError` becomes its Kubernetes ``Status`` body with
its HTTP code; bus trouble is a 503; anything unexpected is logged and a 500 ``Status``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from prometheus_client import Counter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus import __version__
from edgebus.errors import ApiError, BadRequest, Conflict, NotFound
from edgebus.objects import RESOURCES, Resource, rv_of
from edgebus.objectstore import STATUS_SUBRESOURCE, ObjectStore
from services.apiserver import exec as podexec
from services.apiserver import fields, logic, pods, reviews
from services.apiserver.admission import Admission
from services.apiserver.security import Security
from edgebus.kubehttp import WatchResponse, add_common_routes, status_route

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


StatusRoute = status_route(_count)


def _json(body: dict[str, Any], code: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=code)


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title="edgebus apiserver", version=__version__, openapi_url=None, docs_url=None, redoc_url=None)
    app.router.route_class = StatusRoute
    store = ctx.store

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return status_response(logic.MethodNotAllowed("the server does not allow this method on the requested resource"))
        if exc.status_code == 404:
            return status_response(NotFound("the server could not find the requested resource"))
        err = ApiError(str(exc.detail))
        err.code = exc.status_code
        return status_response(err)

    # -- ops and discovery ------------------------------------------------------------
    add_common_routes(app, health=ctx.health, ready=ctx.ready)

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
            return watch(r, ns, logic.watch_params(dict(q)), table=table)
        items, rev = await store.list(r, ns, label_selector=q.get("labelSelector") or None, field_selector=q.get("fieldSelector") or None)
        return _json(logic.table_body(r, items, rev) if table else logic.list_body(r, items, rev))

    def watch(r: Resource, ns: str | None, p: logic.WatchParams, *, table: bool) -> Response:
        async def events() -> AsyncIterator[bytes]:
            it = store.watch([r], ns, from_revision=p.from_revision, label_selector=p.label_selector, field_selector=p.field_selector)
            async with aclosing(it):  # type: ignore[type-var]
                async for ev in it:
                    yield logic.watch_line(ev.type, logic.table_body(r, [ev.object]) if table else ev.object)

        return WatchResponse(events(), stop=ctx.stopping, timeout=p.timeout)

    async def create(request: Request) -> Response:
        r, ns = collection(request)
        if r.namespaced and ns is None:
            raise logic.MethodNotAllowed(f"{r.plural} are namespaced: create them under /api/v1/namespaces/{{namespace}}/{r.plural}")
        body, dups = fields.parse_body(await request.body())
        logic.check_create(r, body, ns)
        warnings = fields.check(request, r, body, dups)
        if ctx.admission is not None:
            await ctx.admission.admit(request, r, _with_namespace(r, body, ns))
        return fields.respond(await store.create(r, body, namespace=ns), 201, warnings)

    # -- objects ----------------------------------------------------------------------
    def get_object(sub: str | None) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            r, ns, name = item(request, sub)
            logic.check_path_name(r, name)
            obj = await store.get(r, ns, name)
            return _json(logic.table_body(r, [obj], rv_of(obj)) if logic.wants_table(request.headers.get("accept")) else obj)

        return endpoint

    def put_object(sub: str | None) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            r, ns, name = item(request, sub)
            body, dups = fields.parse_body(await request.body())
            logic.check_update(r, body, ns, name)
            warnings = fields.check(request, r, body, dups)
            if ctx.admission is not None:
                await ctx.admission.admit(request, r, _with_namespace(r, body, ns), subresource=sub)
            return fields.respond(await store.update(r, body, namespace=ns, subresource=sub), 200, warnings)

        return endpoint

    def patch_object(sub: str | None) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            r, ns, name = item(request, sub)
            content_type = request.headers.get("content-type")
            logic.patch_type(content_type)
            logic.check_path_name(r, name)
            body = await request.body()
            dups = [] if logic.patch_type(content_type) == logic.JSON_PATCH else fields.duplicates(body)
            for attempt in range(PATCH_RETRIES):
                current = await store.get(r, ns, name)
                new = logic.apply_patch(content_type, current, body)
                logic.check_update(r, new, ns, name)
                warnings = fields.check(request, r, new, dups, current=current)
                if ctx.admission is not None:
                    await ctx.admission.admit(request, r, new, current=current, subresource=sub)
                pinned = rv_of(new) != rv_of(current)  # the patch itself names a resourceVersion
                if not pinned:
                    new.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
                try:
                    return fields.respond(await store.update(r, new, namespace=ns, subresource=sub), 200, warnings)
                except Conflict:
                    if pinned or attempt == PATCH_RETRIES - 1:
                        raise
            raise AssertionError("unreachable")

        return endpoint

    async def delete_object(request: Request) -> Response:
        fields.reject_dry_run(request)
        r, ns, name = item(request)
        logic.check_path_name(r, name)
        raw = await request.body()
        opts = None
        if raw.strip():
            opts = logic.parse_json(raw)
            if not isinstance(opts, dict):
                raise BadRequest("DeleteOptions must be a JSON object")
            fields.reject_dry_run(request, opts)
        rv, grace, uid = pods.delete_options(opts, dict(request.query_params))
        return _json(await store.delete(r, ns, name, resource_version=rv, grace_period_seconds=grace, uid=uid))

    # Order matters: the first full match wins, and /api/v1/namespaces/{name}[/status]
    # (a Namespace) must not be taken for a collection inside a namespace. The same routes
    # serve the core group (/api/v1) and the named groups (/apis/{group}/{version}).
    pods.add_routes(app, store)
    podexec.add_routes(app, store)
    if ctx.security is not None:
        reviews.add_routes(app, store, ctx.security, max_token_seconds=ctx.max_token_seconds)
    for prefix in ("/api/v1", "/apis/{group}/{version}"):
        _add_object_routes(app, prefix, get_object, put_object, patch_object, delete_object, list_or_watch, create)
    return app


def _with_namespace(r: Resource, body: dict[str, Any], ns: str | None) -> dict[str, Any]:
    """The object as it will be stored, as far as admission cares: in its namespace."""
    if not r.namespaced or not isinstance(body.get("metadata"), dict) or body["metadata"].get("namespace"):
        return body
    return {**body, "metadata": {**body["metadata"], "namespace": ns or "default"}}


def _add_object_routes(
    app: FastAPI,
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
    app.add_api_route(ns_coll + "/{name}/status", get_object("status"), methods=["GET"])
    app.add_api_route(ns_coll + "/{name}/status", put_object("status"), methods=["PUT"])
    app.add_api_route(ns_coll + "/{name}/status", patch_object("status"), methods=["PATCH"])
    app.add_api_route(ns_coll + "/{name}", get_object(None), methods=["GET"])
    app.add_api_route(ns_coll + "/{name}", put_object(None), methods=["PUT"])
    app.add_api_route(ns_coll + "/{name}", patch_object(None), methods=["PATCH"])
    app.add_api_route(ns_coll + "/{name}", delete_object, methods=["DELETE"])
    app.add_api_route(cl_coll + "/{name}/status", get_object("status"), methods=["GET"])
    app.add_api_route(cl_coll + "/{name}/status", put_object("status"), methods=["PUT"])
    app.add_api_route(cl_coll + "/{name}/status", patch_object("status"), methods=["PATCH"])
    app.add_api_route(ns_coll, list_or_watch, methods=["GET"])
    app.add_api_route(ns_coll, create, methods=["POST"])
    app.add_api_route(cl_coll + "/{name}", get_object(None), methods=["GET"])
    app.add_api_route(cl_coll + "/{name}", put_object(None), methods=["PUT"])
    app.add_api_route(cl_coll + "/{name}", patch_object(None), methods=["PATCH"])
    app.add_api_route(cl_coll + "/{name}", delete_object, methods=["DELETE"])
    app.add_api_route(cl_coll, list_or_watch, methods=["GET"])
    app.add_api_route(cl_coll, create, methods=["POST"])
