"""The API over NATS: an HTTP request in an envelope is answered by the same FastAPI app
that serves HTTP, in-process, so both faces behave identically.

Edge metaservers forward the writes they receive here (``edgebus.api.request``, pool
delivery: one apiserver replica answers). Content: ``{method, path, query, headers, body}``;
reply: ``{status, headers, body}``.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from edgebus import names
from edgebus.bus import Delivery, Message, Router
from edgebus.errors import BadRequest

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def add_relay(router: Router[Any], app: FastAPI) -> None:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://apiserver.nats", timeout=30)

    @router.reply(names.API_REQUEST_SUBJECT, delivery=Delivery.POOL, name="api-request")
    async def api_request(m: Message, _ctx: Any) -> dict[str, Any]:
        req = m.env.content
        if not isinstance(req, dict) or req.get("method") not in ALLOWED_METHODS or not str(req.get("path", "")).startswith("/api"):
            raise BadRequest("an API request needs method (GET/POST/PUT/PATCH/DELETE) and a /api... path")
        if (req.get("query") or "") and "watch=" in str(req.get("query")):
            raise BadRequest("watches are not relayed; watch the local metaserver or the apiserver over HTTP")
        body = req.get("body") or b""
        if isinstance(body, str):
            body = body.encode()
        headers = {str(k): str(v) for k, v in (req.get("headers") or {}).items()}
        url = str(req["path"]) + (f"?{req['query']}" if req.get("query") else "")
        r = await client.request(str(req["method"]), url, headers=headers, content=body)
        return {"status": r.status_code, "headers": {"content-type": r.headers.get("content-type", "application/json")}, "body": r.content}
