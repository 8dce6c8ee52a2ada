"""The console's only way to the data: the apiserver's own guarded app, called in-process
with the signed-in user's bearer token, so every read, watch and write is authenticated and
authorized exactly as the same request over HTTPS would be (the console never acts as the
apiserver itself, and has no rights of its own).

Plain requests go through httpx's ASGI transport; watches are streamed by calling the app
directly (httpx's ASGI transport buffers a whole response, and a watch never ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.types import ASGIApp, Message

HOST = "apiserver.console"


@dataclass
class ApiProblem(Exception):
    """A request the API refused (its HTTP code and the message of its ``Status``)."""

    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    @property
    def reason(self) -> str:
        return {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict", 422: "Invalid"}.get(self.code, "Error")


def _problem(code: int, body: bytes) -> ApiProblem:
    try:
        msg = json.loads(body).get("message") or ""
    except (ValueError, AttributeError):
        msg = body.decode("utf-8", "replace")[:300]
    return ApiProblem(code, str(msg))


class UserApi:
    """The API as one user (``token``; None: no credentials, as with authentication off)."""

    def __init__(self, app: ASGIApp, token: str | None, *, timeout: float = 30.0) -> None:
        self.app = app
        self.token = token
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{HOST}", timeout=timeout)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        h = {"accept": "application/json"}
        if self.token is not None:
            h["authorization"] = f"Bearer {self.token}"
        return h

    async def request(self, method: str, path: str, *, query: dict[str, str] | None = None, body: Any = None) -> Any:
        headers = self._headers()
        content = None
        if body is not None:
            headers["content-type"] = "application/json"
            content = json.dumps(body).encode()
        r = await self._client.request(method, path, params=query, headers=headers, content=content)
        if r.status_code >= 400:
            raise _problem(r.status_code, r.content)
        if "json" in r.headers.get("content-type", ""):
            return r.json()
        return r.text

    async def get(self, path: str, **query: str) -> Any:
        return await self.request("GET", path, query=query or None)

    async def watch(self, path: str, query: dict[str, str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """``(type, object)`` of each watch event, until the server ends the watch. A refused
        watch raises :class:`ApiProblem`."""
        q = {**query, "watch": "true", "allowWatchBookmarks": "false"}
        headers = [(k.encode(), v.encode()) for k, v in {**self._headers(), "host": HOST}.items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(q).encode(),
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": (HOST, 80),
        }
        out: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=256)
        gone = asyncio.Event()
        sent_request = False

        async def receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            await out.put(message)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                await out.put(None)

        task = asyncio.create_task(run(), name=f"console-watch:{path}")
        try:
            start = await out.get()
            if start is None or start["type"] != "http.response.start":
                raise ApiProblem(500, "the watch ended before it started")
            status = int(start["status"])
            buf = b""
            if status >= 400:
                while (m := await out.get()) is not None:
                    buf += m.get("body", b"")
                    if not m.get("more_body"):
                        break
                raise _problem(status, buf)
            while (m := await out.get()) is not None:
                buf += m.get("body", b"")
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        ev = json.loads(line)
                        yield str(ev.get("type")), ev.get("object") or {}
                if not m.get("more_body", False):
                    return
        finally:
            gone.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
