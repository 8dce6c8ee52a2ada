"""An HTTP ``Upgrade: SPDY/3.1`` handed to the ASGI app as a websocket-typed connection.

kubectl before 1.29 runs ``exec``/``attach``/``cp`` (and before 1.31 ``port-forward``) by
upgrading a POST to SPDY/3.1 (``X-Stream-Protocol-Version`` lists what it speaks). uvicorn
serves only websocket upgrades, so the HTTP protocol here recognizes this one and runs the
app with a scope of type ``websocket`` whose ``extensions`` carry ``edgebus.spdy`` (the
protocols offered) and ``websocket.http.response`` (a refusal is a plain HTTP answer).
Everything an app does with a websocket works: the authentication and authorization
middleware sees the request (method ``POST``: verb ``create``), ``accept`` answers ``101
Switching Protocols`` with the chosen ``X-Stream-Protocol-Version``, and then the bytes of
the connection are the messages (raw, unframed: the app speaks SPDY over them,
:mod:`edgebus.spdy`).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Callable
from typing import Any

SPDY_EXTENSION = "edgebus.spdy"


class SpdyUpgrade(asyncio.Protocol):
    def __init__(self, app: Any, scope: dict[str, Any]) -> None:
        self.app = app
        self.scope = scope
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.accepted = False
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    # -- transport --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.queue.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.get_running_loop().create_task(self._run(), name="spdy-upgrade")

    def data_received(self, data: bytes) -> None:
        self.queue.put_nowait({"type": "websocket.receive", "bytes": data})

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})

    # -- ASGI -------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.queue.get, self._send)
        except Exception:
            pass
        finally:
            if self.transport is not None and not self.closed:
                self.transport.close()

    async def _send(self, message: dict[str, Any]) -> None:
        t = self.transport
        if t is None or self.closed:
            return
        kind = message["type"]
        if kind == "websocket.accept" and not self.accepted:
            self.accepted = True
            proto = message.get("subprotocol") or ""
            head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            if proto:
                head += f"X-Stream-Protocol-Version: {proto}\r\n"
            t.write((head + "\r\n").encode("latin-1"))
        elif kind == "websocket.send" and self.accepted:
            t.write(message.get("bytes") or (message.get("text") or "").encode())
        elif kind == "websocket.http.response.start" and not self.accepted:
            status = int(message.get("status", 403))
            headers = "".join(f"{k.decode('latin-1')}: {v.decode('latin-1')}\r\n" for k, v in message.get("headers", []) if k.lower() != b"content-length")
            self._pending = (status, headers)
        elif kind == "websocket.http.response.body" and not self.accepted:
            status, headers = getattr(self, "_pending", (403, ""))
            body = message.get("body") or b""
            t.write(f"HTTP/1.1 {status} Refused\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1") + body)
            if not message.get("more_body"):
                t.close()
        elif kind == "websocket.close":
            if not self.accepted:
                body = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"upgrade refused","reason":"BadRequest","code":400}'
                t.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            t.close()


def spdy_http_protocol() -> Callable[..., asyncio.Protocol]:
    """uvicorn's httptools HTTP protocol (a C parser; h11 parses in Python, at a cost every
    API request pays), taking ``Upgrade: SPDY/3.1`` requests too."""
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HttpToolsWithSpdy(HttpToolsProtocol):
        def _should_upgrade(self) -> bool:
            if self._get_upgrade() == b"spdy/3.1":
                return True
            return bool(super()._should_upgrade())

        def handle_websocket_upgrade(self) -> None:
            if self._get_upgrade() != b"spdy/3.1":
                super().handle_websocket_upgrade()
                return
            self.connections.discard(self)
            # the parser stopped at the upgrade before the request's path went into the scope
            url = httptools.parse_url(self.url)
            path = url.path.decode("ascii")
            offered = [v.decode("latin-1").strip() for k, v in self.headers if k == b"x-stream-protocol-version"]
            offered = [p.strip() for v in offered for p in v.split(",") if p.strip()]
            scope = {
                **self.scope,
                "type": "websocket",
                "scheme": "wss" if self.scope.get("scheme") == "https" else "ws",
                "path": self.root_path + (urllib.parse.unquote(path) if "%" in path else path),
                "raw_path": self.root_path.encode("ascii") + url.path,
                "query_string": url.query or b"",
                "subprotocols": offered,
                "extensions": {SPDY_EXTENSION: {"protocols": offered}, "websocket.http.response": {}},
            }
            protocol = SpdyUpgrade(self.app, scope)
            assert self.transport is not None
            self.transport.set_protocol(protocol)
            protocol.connection_made(self.transport)

    return HttpToolsWithSpdy
