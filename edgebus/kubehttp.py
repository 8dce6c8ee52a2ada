"""HTTP pieces shared by edgebus's Kubernetes-style servers (the apiserver, each edge's
metaserver): their routes (errors answered as Kubernetes `Status` objects), the watch
response and Status error responses.

The watch response sends newline-delimited JSON events over a chunked HTTP response.

The stream runs in its own task, raced against the client's disconnect, the request's
``timeoutSeconds`` and the service's shutdown; whichever comes first ends it, and the
event source (an object-store watch and its JetStream consumer) is closed every time.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import aclosing
from typing import Any

from prometheus_client import Gauge
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from edgebus import kube, openapi
from edgebus.bus import BusError
from edgebus.errors import ApiError, NotFound, Unavailable
from edgebus.openapi import gnostic
from edgebus.openapi import protobuf as kproto
from edgebus.runtime.ops import OpsApp

log = logging.getLogger("edgebus.kubehttp")

OPEN_WATCHES = Gauge("edgebus_watches", "Watch streams being served", ["server"])


class WatchResponse(Response):
    media_type = "application/json"

    def __init__(
        self, events: AsyncIterator[bytes], *, stop: asyncio.Event, timeout: float | None = None, server: str = "apiserver", closed: asyncio.Event | None = None
    ) -> None:
        # Like StreamingResponse: no body, so no Content-Length, so the response is chunked.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache, private"})
        self.events = events
        self.stop = stop
        self.timeout = timeout
        self.server = server
        #: set by the event source to end the stream at once (a watcher too slow to keep up)
        self.closed = closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        OPEN_WATCHES.labels(self.server).inc()
        pump = asyncio.create_task(self._pump(send), name=f"{self.server}:watch")
        disconnect = asyncio.create_task(_wait_disconnect(receive), name=f"{self.server}:watch-disconnect")
        stopping = asyncio.create_task(self.stop.wait(), name=f"{self.server}:watch-stop")
        tasks = {pump, disconnect, stopping}
        if self.closed is not None:
            tasks.add(asyncio.create_task(self.closed.wait(), name=f"{self.server}:watch-closed"))
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await asyncio.wait(tasks, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            # The pump closes its consumer in its own task, so that happens even if we are
            # cancelled again while waiting for it.
            await asyncio.wait(tasks)
            OPEN_WATCHES.labels(self.server).dec()
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            log.error("watch stream failed", exc_info=pump.exception())
        if not disconnect.done() or disconnect.cancelled():
            try:
                # a client that stopped reading may never take this: do not wait for it
                # (the connection is then closed without the last chunk)
                await asyncio.wait_for(send({"type": "http.response.body", "body": b"", "more_body": False}), 2.0)
            except (OSError, TimeoutError):
                pass

    async def _pump(self, send: Send) -> None:
        async with aclosing(self.events) as it:  # type: ignore[type-var]
            async for chunk in it:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class ProtobufBodies:
    """ASGI middleware: a request body in Kubernetes protobuf (kubectl's typed clients send
    ``application/vnd.kubernetes.protobuf`` for ``create token``, ``auth can-i``, ``create
    role`` ...) reaches the app as the equivalent JSON; a kind it cannot decode is ``415``."""

    def __init__(self, app: Any, max_bytes: int = 3 << 20) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctype = next((v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"content-type"), "") if scope["type"] == "http" else ""
        if not ctype.split(";", 1)[0].strip().lower() == kproto.CONTENT_TYPE:
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            more = bool(msg.get("more_body"))
            if len(body) > self.max_bytes:
                err = ApiError("the request body is too large")
                err.code, err.reason = 413, "RequestEntityTooLarge"
                await status_response(err)(scope, receive, send)
                return
        try:
            data = json.dumps(kproto.decode(body)).encode()
        except (kproto.ProtobufError, UnicodeDecodeError) as exc:
            err = ApiError(f"the body of the request was in an unknown format: {exc}")
            err.code, err.reason = 415, "UnsupportedMediaType"
            await status_response(err)(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers") or [] if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        sent = False

        async def replay() -> MutableMapping[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, replay, send)


def status_response(exc: ApiError) -> JSONResponse:
    """An error as Kubernetes answers it: a ``Status`` body with the error's HTTP code."""
    return JSONResponse(exc.status(), status_code=exc.code)


def add_common_routes(
    routes: Routes,
    *,
    health: Callable[[], dict[str, object]],
    ready: Callable[[], dict[str, object]],
    version_extra: dict[str, Any] | None = None,
    views: bool = False,
) -> None:
    """The routes every Kubernetes-style server of edgebus answers the same way: health,
    readiness, Prometheus metrics, ``/version`` and API discovery (with ``views``, also the
    resources served as views of others: :mod:`edgebus.objects.device_views`)."""

    ops = OpsApp(health, ready)

    async def operations(request: Request) -> Response:
        # the same answers as every service's ops endpoint
        status, ctype, body = ops.respond("GET", request.url.path)
        return Response(body, status_code=status, media_type=ctype)

    async def version(_: Request) -> Response:
        return JSONResponse({**kube.version_info(), **(version_extra or {})})

    async def api(request: Request) -> Response:
        return JSONResponse(kube.api_versions(request.url.netloc))

    async def apis(_: Request) -> Response:
        return JSONResponse(kube.api_group_list(views=views))

    async def api_group(request: Request) -> Response:
        return JSONResponse(kube.api_group(request.path_params["group"], views=views))

    async def api_group_version(request: Request) -> Response:
        p = request.path_params
        return JSONResponse(kube.api_resource_list(p["group"], p["version"], views=views))

    async def api_v1(_: Request) -> Response:
        return JSONResponse(kube.api_resource_list())

    async def openapi_v2(request: Request) -> Response:
        # kubectl (client-go) asks for gnostic protobuf; anything else gets JSON
        if "protobuf" in request.headers.get("accept", ""):
            return Response(openapi.v2_protobuf(), media_type=gnostic.CONTENT_TYPE)
        return Response(_v2_json(), media_type="application/json")

    async def openapi_v3(_: Request) -> Response:
        return JSONResponse(openapi.v3_root())

    async def openapi_v3_gv(request: Request) -> Response:
        gv = request.path_params["gv"]
        doc = openapi.v3_document(gv)
        if doc is None:
            return status_response(NotFound("the server could not find the requested resource"))
        headers = {"Etag": f'"{openapi.v3_hash(gv)}"'}
        if request.query_params.get("hash") == openapi.v3_hash(gv):
            headers["Cache-Control"] = "public, immutable"
        return Response(doc, media_type="application/json", headers=headers)

    for path, fn in (
        ("/healthz", operations),
        ("/livez", operations),
        ("/readyz", operations),
        ("/metrics", operations),
        ("/version", version),
        ("/api", api),
        ("/apis", apis),
        ("/apis/{group}", api_group),
        ("/apis/{group}/{version}", api_group_version),
        ("/api/v1", api_v1),
        ("/openapi/v2", openapi_v2),
        ("/openapi/v3", openapi_v3),
        ("/openapi/v3/{gv:path}", openapi_v3_gv),
    ):
        routes.add(path, fn, ["GET"])


@functools.cache
def _v2_json() -> bytes:
    return json.dumps(openapi.v2_document(), separators=(",", ":")).encode()


Endpoint = Callable[[Request], Awaitable[Response]]


class Routes:
    """The routes of one of edgebus's Kubernetes-style servers, in matching order (the first
    full match wins), for a Starlette app.

    An endpoint added with :meth:`add` (or :meth:`get` / :meth:`post`) takes the bare
    :class:`Request` and answers its errors the Kubernetes way — an :class:`ApiError` as its
    ``Status``, bus trouble as 503, anything else as a logged 500 — and each of its responses
    is passed to ``on_response`` (metrics). A route answers exactly the methods it is given
    (a GET route does not answer HEAD)."""

    def __init__(self, on_response: Callable[[Request, Response], None]) -> None:
        self.routes: list[BaseRoute] = []
        self._on_response = on_response

    def add(self, path: str, endpoint: Endpoint, methods: list[str]) -> None:
        route = Route(path, self._answering(endpoint), methods=methods)
        route.methods = {m.upper() for m in methods}  # no implicit HEAD
        self.routes.append(route)

    def get(self, path: str) -> Callable[[Endpoint], Endpoint]:
        return self._decorator(path, "GET")

    def post(self, path: str) -> Callable[[Endpoint], Endpoint]:
        return self._decorator(path, "POST")

    def websocket(self, path: str, endpoint: Callable[[WebSocket], Awaitable[None]]) -> None:
        self.routes.append(WebSocketRoute(path, endpoint))

    def plain(self, path: str, endpoint: Endpoint, methods: list[str]) -> None:
        """A route answered as it is: no error mapping, not counted."""
        self.routes.append(Route(path, endpoint, methods=methods))

    def _decorator(self, path: str, method: str) -> Callable[[Endpoint], Endpoint]:
        def add(endpoint: Endpoint) -> Endpoint:
            self.add(path, endpoint, [method])
            return endpoint

        return add

    def _answering(self, endpoint: Endpoint) -> Endpoint:
        on_response = self._on_response

        async def handler(request: Request) -> Response:
            try:
                resp = await endpoint(request)
            except ApiError as exc:
                resp = status_response(exc)
            except BusError as exc:
                log.warning("%s %s: bus error: %s", request.method, request.url.path, exc)
                resp = status_response(Unavailable(f"the object store is unavailable: {exc}"))
            except Exception as exc:
                log.exception("%s %s failed", request.method, request.url.path)
                resp = status_response(ApiError(f"Internal error occurred: {type(exc).__name__}"))
            on_response(request, resp)
            return resp

        return handler
