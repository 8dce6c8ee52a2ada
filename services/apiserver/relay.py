"""The API over NATS: an HTTP request in an envelope is answered by the same app (behind the
same authentication guard) that serves HTTP, in-process, so both faces behave identically.

Each node's metaserver forwards the writes it receives on its own subject,
``edgebus.api.node.<node>`` (:func:`edgebus.names.api_node_subject`; the apiserver listens
on ``edgebus.api.node.*`` in a queue group, so one replica answers). The request carries
no credential: its identity is the node the subject names (``system:node:<node>`` in
``system:nodes``), which NATS permissions guarantee only that node can publish on, and the
Node authorizer decides what it may do. Content: ``{method, path, query, headers, body}``;
reply: ``{status, headers, body}``.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from edgebus import names
from edgebus.auth import node_user
from edgebus.auth.guard import USER_KEY
from edgebus.bus import Delivery, Message, Router
from edgebus.errors import BadRequest

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: request headers a forwarded request keeps (no credentials: the subject is the identity)
FORWARDED_HEADERS = ("content-type", "accept")
_NODE_HEADER = b"x-edgebus-relay-node"


def _as_node(app: ASGIApp) -> ASGIApp:
    """The app as the relay calls it: the node named by the relay's own header becomes the
    request's user (that header is set only here, on in-process requests)."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        node = next((v.decode() for k, v in scope.get("headers") or [] if k == _NODE_HEADER), None)
        headers = [(k, v) for k, v in scope.get("headers") or [] if k != _NODE_HEADER]
        scope = {**scope, "headers": headers}
        if node is not None:
            scope[USER_KEY] = node_user(node)
        await app(scope, receive, send)

    return call


def add_relay(router: Router[Any], app: ASGIApp) -> None:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=_as_node(app)), base_url="http://apiserver.nats", timeout=30)

    @router.reply(names.API_NODE_FILTER, delivery=Delivery.POOL, name="api-request")
    async def api_request(m: Message, _ctx: Any) -> dict[str, Any]:
        try:
            node = names.parse_api_node_subject(m.subject)
        except names.InvalidName:
            raise BadRequest(f"{m.subject} does not name a node") from None
        req = m.env.content
        if not isinstance(req, dict) or req.get("method") not in ALLOWED_METHODS or not str(req.get("path", "")).startswith("/api"):
            raise BadRequest("an API request needs method (GET/POST/PUT/PATCH/DELETE) and a /api... path")
        if (req.get("query") or "") and "watch=" in str(req.get("query")):
            raise BadRequest("watches are not relayed; watch the local metaserver or the apiserver over HTTP")
        body = req.get("body") or b""
        if isinstance(body, str):
            body = body.encode()
        headers = {str(k).lower(): str(v) for k, v in (req.get("headers") or {}).items() if str(k).lower() in FORWARDED_HEADERS}
        headers[_NODE_HEADER.decode()] = node
        url = str(req["path"]) + (f"?{req['query']}" if req.get("query") else "")
        r = await client.request(str(req["method"]), url, headers=headers, content=body)
        return {"status": r.status_code, "headers": {"content-type": r.headers.get("content-type", "application/json")}, "body": r.content}
