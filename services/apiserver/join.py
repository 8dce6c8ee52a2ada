"""Node join and renewal over HTTPS: the only routes a node without credentials may call.

``GET /edgebus/v1/ca`` serves the cluster's CA bundle (a joining node checks it against the
pin in its token before it trusts anything); ``POST /edgebus/v1/join`` and
``POST /edgebus/v1/renew`` are relayed to cloudhub (``edgebus.hub.join`` / ``edgebus.hub.renew``,
which only cloud services may use) and its answer returned as it is. Errors are Kubernetes
``Status`` bodies whose message is meant for the node's operator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus import names
from edgebus.bus import Bus, BusError, RemoteError
from edgebus.envelope import OP_QUERY, Envelope
from edgebus.errors import ApiError, BadRequest, Unavailable
from edgebus.kubehttp import Routes
from services.apiserver import fields

#: the largest join/renew body accepted (a CSR and a few names)
MAX_BODY = 64 << 10


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.status(), status_code=exc.code)


def add_join_routes(routes: Routes, bus: Bus, *, ca_file: str | None) -> None:
    async def relay(subject: str, request: Request) -> Response:
        try:
            body = await fields.read_body(request)
        except ApiError as exc:
            return _error(exc)
        if len(body) > MAX_BODY:
            return _error(BadRequest(f"request body larger than {MAX_BODY} bytes"))
        try:
            import json

            content: Any = json.loads(body or b"{}")
        except ValueError:
            return _error(BadRequest("the body must be JSON"))
        env = Envelope.new(source="apiserver", operation=OP_QUERY, resource="nodes", content=content)
        try:
            out = await bus.call(subject, env, timeout=15.0)
        except RemoteError as exc:
            err = ApiError(str(exc))
            err.code, err.reason = exc.code, exc.reason
            return _error(err)
        except BusError as exc:
            return _error(Unavailable(f"the cloud's identity service does not answer: {exc}"))
        return JSONResponse(out.content if isinstance(out.content, dict) else {})

    @routes.get("/edgebus/v1/ca")
    async def ca(_: Request) -> Response:
        if not ca_file or not Path(ca_file).exists():
            return _error(Unavailable("this cloud serves no CA bundle"))
        return Response(Path(ca_file).read_bytes(), media_type="application/x-pem-file")

    @routes.post("/edgebus/v1/join")
    async def join(request: Request) -> Response:
        return await relay(names.JOIN_SUBJECT, request)

    @routes.post("/edgebus/v1/renew")
    async def renew(request: Request) -> Response:
        return await relay(names.RENEW_SUBJECT, request)
