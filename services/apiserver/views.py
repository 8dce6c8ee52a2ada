"""Routes of the resources served from other resources' objects
(:mod:`edgebus.objects.device_views`): ``devices.kubeedge.io/v1alpha2`` Devices and
DeviceModels (converted to and from the v1beta1 objects stored) and ``DeviceStatus``
(the status of the Device of the same name).

Each request is converted at the edge of the route: a write is checked against the view's
schema (unknown fields, KubeEdge's structural checks), converted to the stored version
(keeping what only the stored version has) and written by the object store like any
write; every answer - objects, lists, watch events - is converted back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus.errors import Conflict
from edgebus.kubehttp import Routes, WatchResponse
from edgebus.objects import device_schema, rv_of
from edgebus.objects.device_views import VIEWS, View
from edgebus.objects.checks import Causes
from edgebus.objectstore import ObjectStore
from services.apiserver import fields, logic

PATCH_RETRIES = 5


def _check(view: View, obj: dict[str, Any]) -> None:
    c = Causes()
    device_schema.check_kind(c, view.resource.version, view.resource.kind, obj)
    c.raise_if_any(view.resource.kind, str((obj.get("metadata") or {}).get("name") or ""))


def add_routes(routes: Routes, store: ObjectStore, stopping: Any) -> None:
    for (group, version, plural), view in VIEWS.items():
        _add(routes, store, stopping, view, f"/apis/{group}/{version}/namespaces/{{namespace}}/{plural}", f"/apis/{group}/{version}/{plural}")


def _add(routes: Routes, store: ObjectStore, stopping: Any, view: View, coll: str, all_ns: str) -> None:
    r, storage = view.resource, view.storage

    def ns_of(request: Request) -> str | None:
        ns = request.path_params.get("namespace")
        if ns is not None:
            logic.check_path_namespace(ns)
        return ns

    async def list_or_watch(request: Request) -> Response:
        ns = ns_of(request)
        q = request.query_params
        table = logic.wants_table(request.headers.get("accept"))
        if logic.parse_bool(q.get("watch")):
            p = logic.watch_params(dict(q), storage.plural)

            async def events() -> AsyncIterator[bytes]:
                it = store.watch([storage], ns, from_revision=p.from_revision, label_selector=p.label_selector, field_selector=p.field_selector)
                async with aclosing(it):
                    async for ev in it:
                        yield logic.watch_line(ev.type, logic.table_body(storage, [ev.object]) if table else view.from_storage(ev.object))

            return WatchResponse(events(), stop=stopping, timeout=p.timeout)
        items, rev = await store.list(storage, ns, label_selector=q.get("labelSelector") or None, field_selector=q.get("fieldSelector") or None)
        if table:
            return JSONResponse(logic.table_body(storage, items, rev))
        return JSONResponse(logic.list_body(r, [view.from_storage(o) for o in items], rev))

    async def get(request: Request) -> Response:
        ns, name = ns_of(request), request.path_params["name"]
        logic.check_path_name(r, name)
        obj = await store.get(storage, ns, name)
        return JSONResponse(logic.table_body(storage, [obj], rv_of(obj)) if logic.wants_table(request.headers.get("accept")) else view.from_storage(obj))

    async def write(request: Request, body: dict[str, Any], dups: list[str], current: dict[str, Any] | None, *, create: bool) -> Response:
        ns = ns_of(request)
        warnings = fields.check(request, r, body, dups, current=view.from_storage(current) if current is not None and not create else None)
        _check(view, body)
        if view.status_only:
            base = current if current is not None else await store.get(storage, ns, str((body.get("metadata") or {}).get("name") or ""))
            new = view.to_storage(body, base)
            out = await store.update(storage, new, namespace=ns, subresource="status", warnings=warnings)
            return fields.respond(view.from_storage(out), 201 if create else 200, warnings)
        if create:
            return fields.respond(view.from_storage(await store.create(storage, view.to_storage(body, None), namespace=ns, warnings=warnings)), 201, warnings)
        new = view.to_storage(body, current)
        return fields.respond(view.from_storage(await store.update(storage, new, namespace=ns, warnings=warnings)), 200, warnings)

    async def create(request: Request) -> Response:
        body, dups = fields.parse_body(await fields.read_body(request))
        logic.check_create(r, body, ns_of(request))
        return await write(request, body, dups, None, create=True)

    async def put(request: Request) -> Response:
        ns, name = ns_of(request), request.path_params["name"]
        body, dups = fields.parse_body(await fields.read_body(request))
        logic.check_update(r, body, ns, name)
        current = await store.get(storage, ns, name)
        if body.get("metadata", {}).get("resourceVersion") in (None, ""):
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return await write(request, body, dups, current, create=False)

    async def patch(request: Request) -> Response:
        ns, name = ns_of(request), request.path_params["name"]
        content_type = request.headers.get("content-type")
        logic.patch_type(content_type)
        logic.check_path_name(r, name)
        raw = await fields.read_body(request)
        dups = [] if logic.patch_type(content_type) == logic.JSON_PATCH else fields.duplicates(raw)
        for attempt in range(PATCH_RETRIES):
            current = await store.get(storage, ns, name)
            seen = view.from_storage(current)
            new = logic.apply_patch(content_type, seen, raw)
            logic.check_update(r, new, ns, name)
            pinned = rv_of(new) != rv_of(seen)
            if not pinned:
                new.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
            try:
                return await write(request, new, dups, current, create=False)
            except Conflict:
                if pinned or attempt == PATCH_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def delete(request: Request) -> Response:
        fields.reject_dry_run(request)
        ns, name = ns_of(request), request.path_params["name"]
        logic.check_path_name(r, name)
        if view.status_only:
            raise logic.MethodNotAllowed(f"a {r.kind} goes with its Device: delete the Device {name}")
        return JSONResponse(view.from_storage(await store.delete(storage, ns, name)))

    added: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        (coll + "/{name}/status", get, ["GET"]),
        (coll + "/{name}/status", put, ["PUT"]),
        (coll + "/{name}/status", patch, ["PATCH"]),
        (coll + "/{name}", get, ["GET"]),
        (coll + "/{name}", put, ["PUT"]),
        (coll + "/{name}", patch, ["PATCH"]),
        (coll + "/{name}", delete, ["DELETE"]),
        (coll, list_or_watch, ["GET"]),
        (coll, create, ["POST"]),
        (all_ns, list_or_watch, ["GET"]),
    ]
    for path, fn, methods in added:
        routes.add(path, fn, methods)
