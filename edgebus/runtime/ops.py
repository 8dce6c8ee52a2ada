"""HTTP for services: the operations endpoint of every service (``/healthz``, ``/readyz``,
``/metrics``), and ASGI apps (the apiserver, the metaserver) under uvicorn.

The operations endpoint answers three GETs, so it is served by a small HTTP/1.1 server on
asyncio streams with h11 (the protocol library uvicorn itself uses) rather than an ASGI
framework: every process has one, and on a small edge device an ASGI stack per process is
memory for nothing. uvicorn (and an app's framework) is imported only by what serves an ASGI
app; :func:`serve_activated` defers even that until the first connection arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import h11

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edgebus.runtime.spdyupgrade import spdy_http_protocol

log = logging.getLogger("edgebus.ops")

Probe = Callable[[], dict[str, object]]
#: idle keep-alive connections are closed after this long
IDLE_TIMEOUT = 30.0


class OpsApp:
    """``/healthz`` (and ``/livez``), ``/readyz``: the probe's JSON, 200 when it says ``ok``,
    else 503; ``/metrics``: Prometheus text."""

    def __init__(self, health: Probe, ready: Probe) -> None:
        self.health = health
        self.ready = ready

    def respond(self, method: str, target: str) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path in ("/healthz", "/livez", "/readyz"):
            body = (self.ready if path == "/readyz" else self.health)()
            return (200 if body.get("ok") else 503), "application/json", json.dumps(body, default=str).encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest()
        return 404, "text/plain", b"not found\n"


def ops_app(health: Probe, ready: Probe) -> OpsApp:
    return OpsApp(health, ready)


async def _ops_connection(app: OpsApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                try:
                    status, ctype, body = app.respond(request.method.decode(), request.target.decode())
                except Exception as exc:  # a probe that fails is an answer, not a dead endpoint
                    log.exception("ops endpoint: %s failed", request.target)
                    status, ctype, body = 500, "text/plain", f"{exc!r}\n".encode()
                headers = [("content-type", ctype), ("content-length", str(len(body)))]
                writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
                if request.method != b"HEAD":
                    writer.write(conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
                request = None
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return
    except h11.RemoteProtocolError:
        with contextlib.suppress(Exception):
            writer.write(conn.send(h11.Response(status_code=400, headers=[("content-length", "0"), ("connection", "close")])))
            await writer.drain()
    except (TimeoutError, ConnectionError, h11.LocalProtocolError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve_ops(app: OpsApp, host: str, port: int, stop: asyncio.Event, *, started: asyncio.Event | None = None) -> None:
    """Serve the operations endpoint until ``stop`` is set (raises ``OSError`` when the
    port cannot be bound)."""
    server = await asyncio.start_server(lambda r, w: _ops_connection(app, r, w), host, port, reuse_address=True)
    try:
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def _kube_websockets() -> Any:
    """uvicorn's websocket protocol, taking the subprotocols a client offers as Kubernetes
    does: kubectl's port-forward offers ``SPDY/3.1+portforward.k8s.io``, which is not an RFC
    6455 token (the ``websockets`` library would refuse the handshake)."""
    import types

    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    def offered(conn: Any, headers: Any) -> Any:
        subprotocols = [t.strip() for h in headers.get_all("Sec-WebSocket-Protocol") for t in h.split(",") if t.strip()]
        return conn.select_subprotocol(subprotocols)

    class KubeWebSocketsProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn.process_subprotocol = types.MethodType(offered, self.conn)  # type: ignore[method-assign]

    return KubeWebSocketsProtocol


async def serve_http(
    app: object,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    started: asyncio.Event | None = None,
    tls: tuple[str, str] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve an ASGI app with uvicorn until ``stop`` is set (over TLS with ``tls`` = (cert
    file, key file); on an already listening ``sock`` when given)."""
    if isinstance(app, OpsApp):
        await serve_ops(app, host, port, stop, started=started)
        return
    import uvicorn

    class QuietServer(uvicorn.Server):
        """A uvicorn server that leaves signal handling to the service runtime."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn exits the interpreter when it cannot bind: an error of this server
            # instead (a SystemExit would end the event loop, every other service with it)
            try:
                await super().startup(sockets=sockets)
            except SystemExit:
                raise OSError(f"cannot serve HTTP on {self.config.host}:{self.config.port} (address in use?)") from None

    ssl_kw = {"ssl_certfile": tls[0], "ssl_keyfile": tls[1]} if tls else {}
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False, ws=_kube_websockets(), http=spdy_http_protocol(), **ssl_kw)  # type: ignore[arg-type]
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None), name=f"http:{port}")
    try:
        while not server.started:
            if task.done():
                task.result()  # raises the bind error
                return
            await asyncio.sleep(0.01)
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 5)
        except (TimeoutError, asyncio.CancelledError, Exception, SystemExit):
            task.cancel()


async def serve_activated(make_app: Callable[[], object], host: str, port: int, stop: asyncio.Event, *, tls: tuple[str, str] | None = None) -> None:
    """Listen on ``host:port`` now, but build the ASGI app - and import what it needs - only
    when the first connection arrives (it waits in the listen backlog meanwhile); then serve
    it with uvicorn on the same socket until ``stop`` is set. For an API that is rarely used
    on a small device (the metaserver): its framework costs memory only once someone uses it."""
    sock = socket.create_server((host, port), reuse_port=False)
    sock.setblocking(False)
    try:
        loop = asyncio.get_running_loop()
        knocked = asyncio.Event()
        loop.add_reader(sock.fileno(), knocked.set)
        try:
            waits = [asyncio.create_task(knocked.wait()), asyncio.create_task(stop.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        finally:
            loop.remove_reader(sock.fileno())
        if stop.is_set():
            return
        app = await asyncio.to_thread(make_app)  # imports off the event loop
        await serve_http(app, host, port, stop, sock=sock, tls=tls)
    finally:
        sock.close()
