"""The ASGI middleware in front of a Kubernetes-style server: it authenticates every
request, checks the ``Origin`` of streaming requests, derives the request's attributes and
asks the authorizer, before the app sees anything.

* credentials: ``Authorization: Bearer <token>`` (for websockets also the subprotocol
  ``base64url.bearer.authorization.k8s.io.<token>``, as Kubernetes accepts from browsers);
  a bad token is ``401``, whatever the path;
* no credentials: ``401`` (Kubernetes' exact ``Status``: ``Unauthorized``), except on the
  anonymous paths, where the request goes on as ``system:anonymous`` and RBAC decides;
* ``UNAUTHENTICATED_PREFIXES``: paths that authenticate themselves (node join), passed on
  untouched;
* a request that arrives with a user already in its scope (``edgebus.user``: the API over
  NATS, whose identity is the node its subject names) is only authorized;
* a browser's cross-origin request to a streaming route (``exec``, ``attach``,
  ``portforward``, ``log``, any websocket) is refused with ``403``: kubectl sends no
  ``Origin``, browsers always do;
* impersonation (``Impersonate-*`` headers, ``kubectl --as``) is refused with ``403`` rather
  than silently ignored;
* denied: ``403`` with Kubernetes' message; ``/healthz``, ``/livez`` and ``/readyz`` are
  never refused by authorization (Kubernetes' ``--authorization-always-allow-paths``).

The app finds the user in ``scope["edgebus.user"]`` and the attributes in
``scope["edgebus.attributes"]``. With authentication off every request is let through as
``system:anonymous`` (only the Origin check stays).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from edgebus.auth.attributes import Attributes, forbidden, request_attributes
from edgebus.auth.rbac import Decision
from edgebus.auth.tokens import InvalidToken
from edgebus.auth.user import ANONYMOUS_USER, UserInfo
from edgebus.errors import ApiError, Forbidden, Unauthorized

log = logging.getLogger("edgebus.auth")

USER_KEY = "edgebus.user"
ATTRIBUTES_KEY = "edgebus.attributes"
#: Routes that do their own authentication (the node join and renew API, and the CA bundle
#: a joining node checks against its token): no token needed.
UNAUTHENTICATED_PREFIXES: tuple[str, ...] = ("/edgebus/v1/",)
#: Health paths are never refused by authorization (kube-apiserver's default
#: ``--authorization-always-allow-paths``), so probes work before the RBAC objects are loaded.
ALWAYS_ALLOW_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
STREAMING_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "log"})
#: opened by an upgraded GET (websocket) or POST (SPDY): both need "create"
UPGRADE_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
WS_TOKEN_PREFIX = "base64url.bearer.authorization.k8s.io."

DECISIONS = Counter("edgebus_api_auth_total", "Requests by authentication and authorization outcome", ["server", "outcome"])

Authenticate = Callable[[str], Awaitable[UserInfo]]
Authorize = Callable[[UserInfo, Attributes], Awaitable[Decision]]


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers") or []:
        if k.lower() == name:
            return str(v.decode("latin-1"))
    return None


def bearer_token(scope: Scope) -> str | None:
    """The bearer token a request carries (header, or the websocket subprotocol)."""
    auth = _header(scope, b"authorization")
    if auth:
        kind, _, token = auth.strip().partition(" ")
        return token.strip() if kind.lower() == "bearer" and token.strip() else ""
    if scope["type"] == "websocket":
        for proto in (_header(scope, b"sec-websocket-protocol") or "").split(","):
            proto = proto.strip()
            if proto.startswith(WS_TOKEN_PREFIX):
                raw = proto[len(WS_TOKEN_PREFIX) :]
                try:
                    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
                except (ValueError, UnicodeDecodeError):
                    return ""
    return None


def cross_origin(scope: Scope) -> str | None:
    """The Origin of a request from another origin than the server's own, else None."""
    origin = _header(scope, b"origin")
    if origin is None:
        return None
    host = (_header(scope, b"host") or "").lower()
    parts = urlsplit(origin.strip())
    if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc.lower() == host and host:
        return None
    return origin


@dataclass
class Guard:
    app: ASGIApp
    authenticate: Authenticate | None  # None: authentication (and authorization) off
    authorize: Authorize
    server: str = "apiserver"
    anonymous_paths: frozenset[str] = field(default_factory=frozenset)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path") or "/"
        if any(path.startswith(p) for p in UNAUTHENTICATED_PREFIXES):
            await self.app(scope, receive, send)
            return
        attrs = request_attributes(scope.get("method") or "GET", path, (scope.get("query_string") or b"").decode("latin-1"))
        try:
            if (scope["type"] == "websocket" or attrs.subresource in STREAMING_SUBRESOURCES) and (origin := cross_origin(scope)):
                DECISIONS.labels(self.server, "cross-origin").inc()
                raise Forbidden(f"cross-origin request refused (Origin {origin}): streaming requests are not served to browsers of other origins")
            user = scope.get(USER_KEY)
            if user is None:
                user = await self._authenticate(scope, path)
            if self.authenticate is not None and any(k.lower().startswith(b"impersonate-") for k, _ in scope.get("headers") or []):
                DECISIONS.labels(self.server, "forbidden").inc()
                raise Forbidden("impersonation (--as, Impersonate-* headers) is not supported by this server: the request was not run")
            if (self.authenticate is not None or scope.get(USER_KEY) is not None) and path not in ALWAYS_ALLOW_PATHS:
                d = await self.authorize(user, attrs)
                if d.allowed and attrs.verb == "get" and attrs.subresource in UPGRADE_SUBRESOURCES:
                    # a websocket upgrade is a GET; Kubernetes (1.31+) also requires "create"
                    # on pods/exec, pods/attach, pods/portforward, as for SPDY's POST
                    attrs_create = dataclasses.replace(attrs, verb="create")
                    d = await self.authorize(user, attrs_create)
                    if not d.allowed:
                        attrs = attrs_create
                if not d.allowed:
                    DECISIONS.labels(self.server, "forbidden").inc()
                    log.info("forbidden: %s %s %s (%s)", user.name, attrs.verb, path, d.reason or "no rule")
                    raise forbidden(user.name, attrs, d.reason if not d.reason.startswith("RBAC: allowed") else "")
        except ApiError as exc:
            await _deny(scope, receive, send, exc)
            return
        DECISIONS.labels(self.server, "allowed").inc()
        await self.app({**scope, USER_KEY: user, ATTRIBUTES_KEY: attrs}, receive, send)

    async def _authenticate(self, scope: Scope, path: str) -> UserInfo:
        if self.authenticate is None:
            return ANONYMOUS_USER
        token = bearer_token(scope)
        if token is None:
            if path in self.anonymous_paths:
                return ANONYMOUS_USER
            DECISIONS.labels(self.server, "unauthorized").inc()
            raise Unauthorized("Unauthorized")
        try:
            if not token:
                raise InvalidToken("empty bearer token")
            return await self.authenticate(token)
        except InvalidToken as exc:
            DECISIONS.labels(self.server, "unauthorized").inc()
            log.info("unauthorized %s: %s", path, exc)
            raise Unauthorized("Unauthorized") from None


async def _deny(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> None:
    body = json.dumps(exc.status(), separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": exc.code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    msg = await receive()  # websocket.connect
    if msg.get("type") != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send({"type": "websocket.http.response.start", "status": exc.code, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
