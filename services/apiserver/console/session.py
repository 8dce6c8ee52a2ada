"""The console's session: the user's bearer token in a cookie the browser sends only to the
console's own paths, over HTTPS, never to scripts and never with cross-site requests
(``Secure; HttpOnly; SameSite=Strict; Path=/console``), as the Kubernetes Dashboard keeps
its token. There is no server-side session table, so any apiserver replica serves any
request, and signing out (or the token expiring) ends the session.

Writes also need a CSRF token: a hash of the session's bearer token, which a page from
another site can neither read nor compute, checked with the request's ``Origin``.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "edgebus-console"
PREFIX = "/console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


def token_of(request: Request) -> str | None:
    t = request.cookies.get(COOKIE)
    return t.strip() if t and t.strip() else None


def csrf_token(token: str | None) -> str:
    return hashlib.sha256(b"edgebus-console-csrf\0" + (token or "").encode()).hexdigest()[:40]


def same_origin(request: Request) -> bool:
    """No ``Origin`` (not a browser's cross-origin request) or this server's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = (request.headers.get("host") or "").lower()
    parts = urlsplit(origin.strip())
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == host


def csrf_ok(request: Request, sent: str | None) -> bool:
    return same_origin(request) and sent is not None and hmac.compare_digest(sent, csrf_token(token_of(request)))


def set_session(resp: Response, request: Request, token: str) -> None:
    resp.set_cookie(COOKIE, token, path=PREFIX, httponly=True, samesite="strict", secure=request.url.scheme == "https")


def clear_session(resp: Response, request: Request) -> None:
    resp.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=request.url.scheme == "https")
