"""The console's routes (a Starlette app under ``/console``), served by the apiserver next to
the API. Every page and every write is made through :class:`UserApi` as the signed-in
user; the console itself holds no credential.

* ``GET /console/login`` / ``POST /console/login``: a bearer token in, a session cookie out;
  ``POST /console/logout``;
* pages ``/console/`` (fleet), ``/console/nodes/{name}``, ``/console/devices``,
  ``/console/devices/{ns}/{name}``, ``/console/workloads``, ``/console/events``, each with a
  live stream under ``/console/stream/...`` (server-sent events);
* ``POST /console/devices/{ns}/{name}/desired``: set a desired value (CSRF token, the user's
  RBAC; a refusal is shown with its code);
* ``GET /console/pods/{ns}/{name}/log``: the last lines of a pod's log;
* ``/console/static/...``: htmx and its SSE extension (vendored), the stylesheet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgebus.errors import ApiError
from edgebus.objects.devices import model_props
from services.apiserver.console import live, model, pages, session
from services.apiserver.console.userapi import ApiProblem, UserApi

log = logging.getLogger("edgebus.console")

LOG_LINES = 200
SET_RETRIES = 5


def templates() -> Environment:
    env = Environment(loader=PackageLoader("services.apiserver.console", "templates"), autoescape=select_autoescape(["html"]))
    env.filters["svg"] = lambda s: Markup(s)  # sparklines: built from numbers only (model.sparkline)
    return env


class Console:
    def __init__(self, api_app: ASGIApp, stopping: asyncio.Event, *, min_interval: float = 0.5) -> None:
        self.api_app = api_app
        self.stopping = stopping
        self.min_interval = min_interval
        self.history = model.PropertyHistory()
        self.links = model.LinkHistory()
        self.env = templates()

    # -- helpers --------------------------------------------------------------------------
    def api(self, request: Request) -> UserApi:
        return UserApi(self.api_app, session.token_of(request))

    def observe(self, key: str, obj: dict[str, Any]) -> None:
        if key in ("device", "devices") and obj.get("kind", "Device") == "Device":
            self.history.record(obj)
        elif key == "nodes":
            self.links.record(obj)

    def render(self, template: str, /, **ctx: Any) -> str:
        return self.env.get_template(template).render(**ctx)

    def html(self, template: str, code: int = 200, /, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(self.render(template, **ctx), status_code=code)

    def fragment(self, page: pages.Page, states: dict[str, live.FeedState]) -> str:
        return self.render(page.template, **page.context(states, dt.datetime.now(dt.UTC)))

    async def show(self, request: Request, page: pages.Page, **extra: Any) -> Response:
        if session.token_of(request) is None:
            return self.to_login(request)
        api = self.api(request)
        try:
            states = await live.load_all(api, page.feeds, self.observe)
        finally:
            await api.aclose()
        if states and all(s.problem is not None and s.problem.code == 401 for s in states.values()):
            resp = self.to_login(request)
            session.clear_session(resp, request)
            return resp
        ctx = {**page.context(states, dt.datetime.now(dt.UTC)), "csrf": session.csrf_token(session.token_of(request))}
        body = self.render(page.template, **ctx)
        return self.html("page.html", **ctx, page=page, body=Markup(body), user=await self.whoami(request), **extra)

    def stream(self, request: Request, page: pages.Page) -> Response:
        if session.token_of(request) is None:
            return Response(status_code=401)
        gen = live.stream(
            self.api(request), page.feeds, lambda st: self.fragment(page, st), page.event, self.stopping, observe=self.observe, min_interval=self.min_interval
        )
        return StreamingResponse(gen, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @staticmethod
    def to_login(request: Request) -> Response:
        return RedirectResponse(f"/console/login?next={quote(request.url.path)}", status_code=303)

    # -- sign in and out ------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        return self.html("login.html", next=_safe_next(request.query_params.get("next")), error="")

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        token = str(form.get("token") or "").strip()
        nxt = _safe_next(str(form.get("next") or ""))
        if not session.same_origin(request):
            return self.html("login.html", 403, next=nxt, error="sign-in from another site refused")
        if not token:
            return self.html("login.html", 400, next=nxt, error="paste a bearer token")
        api = UserApi(self.api_app, token)
        try:
            await api.get("/version")  # a bad token is 401 on every path
        except ApiProblem as exc:
            return self.html("login.html", 401 if exc.code == 401 else 400, next=nxt, error="the token was not accepted" if exc.code == 401 else str(exc))
        finally:
            await api.aclose()
        resp = RedirectResponse(nxt, status_code=303)
        session.set_session(resp, request, token)
        return resp

    async def logout(self, request: Request) -> Response:
        form = await read_form(request)
        if not session.csrf_ok(request, str(form.get(session.CSRF_FIELD) or "")):
            return Response("CSRF token missing or wrong", status_code=403)
        resp = RedirectResponse("/console/login", status_code=303)
        session.clear_session(resp, request)
        return resp

    async def whoami(self, request: Request) -> str:
        api = self.api(request)
        try:
            r = await api.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            return str(((r.get("status") or {}).get("userInfo") or {}).get("username") or "")
        except ApiProblem:
            return ""
        finally:
            await api.aclose()

    # -- pages ----------------------------------------------------------------------------
    def _fleet(self, request: Request) -> pages.Page:
        q = request.query_params
        status = q.get("status") if q.get("status") in ("all", "ready", "notready") else "all"
        grouping = q.get("group") if q.get("group") in (*model.GROUP_LABELS, "none") else "site"
        return pages.fleet_page(q.get("q", "")[:200], status or "all", grouping or "site")

    async def fleet(self, request: Request) -> Response:
        return await self.show(request, self._fleet(request))

    async def node(self, request: Request) -> Response:
        return await self.show(request, pages.node_page(request.path_params["name"], self.links))

    async def devices(self, request: Request) -> Response:
        return await self.show(request, pages.devices_page())

    def _device(self, request: Request) -> pages.Page:
        p = request.path_params
        return pages.device_page(p["namespace"], p["name"], self.history, session.csrf_token(session.token_of(request)))

    async def device(self, request: Request) -> Response:
        return await self.show(request, self._device(request))

    async def workloads(self, request: Request) -> Response:
        return await self.show(request, pages.workloads_page())

    async def events(self, request: Request) -> Response:
        return await self.show(request, pages.events_page())

    async def pod_log(self, request: Request) -> Response:
        if session.token_of(request) is None:
            return self.to_login(request)
        ns, name = request.path_params["namespace"], request.path_params["name"]
        api = self.api(request)
        try:
            text, error = await api.get(f"/api/v1/namespaces/{quote(ns)}/pods/{quote(name)}/log", tailLines=str(LOG_LINES)), ""
        except ApiProblem as exc:
            text, error = "", str(exc)
        finally:
            await api.aclose()
        return self.html("log.html", namespace=ns, name=name, text=str(text), error=error, lines=LOG_LINES)

    # -- writes ---------------------------------------------------------------------------
    async def set_desired(self, request: Request) -> Response:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        form = await read_form(request)
        sent = request.headers.get(session.CSRF_HEADER) or str(form.get(session.CSRF_FIELD) or "")
        if session.token_of(request) is None:
            return self.result(401, "not signed in")
        if not session.csrf_ok(request, sent):
            return self.result(403, "CSRF token missing or wrong: reload the page")
        prop, value = str(form.get("property") or ""), str(form.get("value") or "").strip()
        api = self.api(request)
        try:
            code, msg = await set_desired_value(api, ns, name, prop, value)
        finally:
            await api.aclose()
        return self.result(code, msg)

    def result(self, code: int, message: str) -> HTMLResponse:
        return self.html("_result.html", code, code=code, reason=ApiProblem(code, message).reason, message=message)

    # -- the app --------------------------------------------------------------------------
    def app(self) -> Starlette:
        def live_route(path: str, make: Any) -> Route:
            async def endpoint(request: Request) -> Response:
                return self.stream(request, make(request))

            return Route(path, endpoint)

        routes = [
            Route("/console", lambda r: RedirectResponse("/console/", status_code=307)),
            Route("/console/", self.fleet),
            Route("/console/login", self.login_form, methods=["GET"]),
            Route("/console/login", self.login, methods=["POST"]),
            Route("/console/logout", self.logout, methods=["POST"]),
            Route("/console/nodes/{name}", self.node),
            Route("/console/devices", self.devices),
            Route("/console/devices/{namespace}/{name}", self.device),
            Route("/console/devices/{namespace}/{name}/desired", self.set_desired, methods=["POST"]),
            Route("/console/pods/{namespace}/{name}/log", self.pod_log),
            Route("/console/workloads", self.workloads),
            Route("/console/events", self.events),
            live_route("/console/stream/fleet", self._fleet),
            live_route("/console/stream/nodes/{name}", lambda r: pages.node_page(r.path_params["name"], self.links)),
            live_route("/console/stream/devices", lambda r: pages.devices_page()),
            live_route("/console/stream/devices/{namespace}/{name}", self._device),
            live_route("/console/stream/workloads", lambda r: pages.workloads_page()),
            live_route("/console/stream/events", lambda r: pages.events_page()),
            Mount("/console/static", app=StaticFiles(packages=[("services.apiserver.console", "static")]), name="static"),
        ]
        return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


#: every console response: scripts, styles and requests only from the console itself (htmx
#: runs with eval off and without injected styles), never framed (no clickjacking of its
#: forms), no referrer to elsewhere, no type sniffing
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


async def set_desired_value(api: UserApi, ns: str, name: str, prop: str, value: str) -> tuple[int, str]:
    """Set one desired value as the user: read the device (and its model, to refuse what the
    edge would never write), write it back on the revision read (again on a conflict)."""
    base = "/apis/devices.kubeedge.io/v1beta1"
    path = f"{pages.ns_path(base, ns, 'devices')}/{quote(name, safe='')}"
    for _ in range(SET_RETRIES):
        try:
            dev = await api.get(path)
            mname = model.device_model_name(dev)
            if mname:
                props = model_props(await api.get(f"{pages.ns_path(base, ns, 'devicemodels')}/{quote(mname, safe='')}"))
                mp = props.get(prop)
                if mp is None:
                    return 422, f"the model {mname} has no property {prop}"
                if not mp.writable:
                    return 422, f"{prop} is ReadOnly"
                try:
                    mp.check(value)
                except ValueError as exc:
                    return 422, f"{prop}={value}: {exc}"
            await api.request("PUT", path, body=model.with_desired(dev, prop, value))
            return 200, f"{prop} desired = {value}"
        except ApiProblem as exc:
            if exc.code == 409:
                continue
            return exc.code, exc.message
        except ApiError as exc:
            return exc.code, exc.message
    return 409, f"device {name} kept changing; try again"


async def read_form(request: Request, limit: int = 64 << 10) -> dict[str, str]:
    """A posted ``application/x-www-form-urlencoded`` form (the console's only kind), first
    value of each field; a larger body than ``limit`` reads as empty."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _safe_next(nxt: str | None) -> str:
    """Where to go after sign-in: a console path only (never another site)."""
    if nxt and nxt.startswith("/console/") and not nxt.startswith("//") and "\\" not in nxt:
        return nxt
    return "/console/"


def with_console(api: ASGIApp, console: ASGIApp) -> ASGIApp:
    """One ASGI app: ``/console`` and below to the console, everything else to ``api``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") or ""
        if scope["type"] == "http" and (path == session.PREFIX or path.startswith(session.PREFIX + "/")):
            await console(scope, receive, send)
            return
        await api(scope, receive, send)

    return app
