"""``kubectl exec`` and ``kubectl attach`` over the Kubernetes websocket streaming protocol.

``/api/v1/namespaces/{ns}/pods/{name}/exec?command=...&stdin=..&stdout=..&stderr=..&tty=..``
(and ``/attach``) upgraded to a websocket with subprotocol ``v5.channel.k8s.io`` or
``v4.channel.k8s.io`` (kubectl 1.30+ by default, 1.29 with
``KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true``). Every binary message starts with its
channel: 0 stdin, 1 stdout, 2 stderr, 3 the final ``Status`` (success, or
``NonZeroExitCode`` with the exit code, which kubectl turns into its own), 4 terminal size;
v5 adds 255, the close of a channel (kubectl's standard input ended).

Shared by the cloud apiserver and each node's metaserver: ``add_routes`` takes how to reach
the pod's node (an :class:`EdgedClient`: the apiserver's through the node's leaf link, the
metaserver's on the node's own server, so exec works on a node cut off from the cloud).
The stream is opened on the pod's node (edged's ``stream``: CRI ``Exec``/``Attach``
streaming) and carried over NATS with flow control (:class:`edgebus.streampipe.StreamPipe`):
interactive, as long as it lasts, as many at once as wanted. When kubectl goes away the
pipe is reset and the node kills the command. kubectl 1.27-1.29 upgrade to SPDY/3.1
instead (``v4.channel.k8s.io``, a SPDY stream per channel): the HTTP server hands that
upgrade to this route like a websocket (:mod:`edgebus.runtime.spdyupgrade`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from edgebus import spdy
from edgebus.errors import ApiError, BadRequest
from edgebus.podstream import Locate, deny, spdy_offer, subprotocols
from edgebus.streampipe import PipeReset, StreamPipe
from edgebus.kubehttp import Routes

log = logging.getLogger("edgebus.podexec")

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
SPDY_PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
PATHS = {"exec": "/api/v1/namespaces/{namespace}/pods/{name}/exec", "attach": "/api/v1/namespaces/{namespace}/pods/{name}/attach"}
#: kept for callers of the non-streaming API
PATH = PATHS["exec"]


def _true(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true")


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    """The Status that ends the stream, as the kubelet sends it."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command {command}, exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def stream_request(kind: str, namespace: str, name: str, q: Any) -> dict[str, Any]:
    """What edged's ``stream`` needs, from the query of kubectl's request (checked)."""
    command = q.getlist("command") if kind == "exec" else None
    flags = {k: _true(q.get(k)) for k in ("stdin", "stdout", "stderr", "tty")}
    if kind == "exec" and not command:
        raise BadRequest("you must specify at least one command for the container")
    if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
        raise BadRequest("you must specify at least one of stdin, stdout, stderr")
    if flags["tty"]:
        flags["stderr"] = False  # a terminal has one output stream
    return {"kind": kind, "namespace": namespace, "name": name, "container": q.get("container") or None, "command": command, **flags}


async def _carry(ws: WebSocket, pipe: StreamPipe, *, v5: bool) -> None:
    async def down() -> None:  # the node -> kubectl
        while True:
            item = await pipe.recv()
            if item is None:
                return
            ch, data = item
            if data:
                await ws.send_bytes(bytes([ch]) + data)

    async def up() -> None:  # kubectl -> the node
        while True:
            try:
                msg = await ws.receive_bytes()
            except (WebSocketDisconnect, RuntimeError, KeyError):
                return
            if not msg:
                continue
            ch = msg[0]
            if ch == CLOSE and v5 and len(msg) > 1:
                await pipe.close_channel(msg[1])
            elif ch in (STDIN, RESIZE):
                await pipe.send(ch, msg[1:])

    d = asyncio.create_task(down(), name="exec-down")
    u = asyncio.create_task(up(), name="exec-up")
    try:
        done, _ = await asyncio.wait({d, u}, return_when=asyncio.FIRST_COMPLETED)
        if d in done:
            exc = d.exception()
            if isinstance(exc, PipeReset):
                await ws.send_bytes(bytes([ERROR]) + json.dumps(ApiError(f"the stream from the node was lost: {exc}").status()).encode())
            u.cancel()
        else:
            await pipe.reset("the client went away")
            d.cancel()
        for t in (d, u):
            with contextlib.suppress(BaseException):
                await t
    finally:
        await pipe.close()


async def _carry_spdy(ws: WebSocket, pipe: StreamPipe, req: dict[str, Any]) -> None:
    """kubectl < 1.29: SPDY/3.1 (``v4.channel.k8s.io``), one SPDY stream per channel, which
    kubectl opens: error, stdin, stdout, stderr, resize (those the request asked for)."""
    expected = {"error"} | {k for k in ("stdin", "stdout", "stderr") if req[k]} | ({"resize"} if req["tty"] else set())
    streams: dict[str, spdy.SpdyStream] = {}
    ready = asyncio.Event()

    async def on_stream(st: spdy.SpdyStream) -> None:
        await session.reply(st)
        streams[st.headers.get("streamtype", "")] = st
        if expected <= streams.keys():
            ready.set()

    async def write(b: bytes) -> None:
        await ws.send_bytes(b)

    session = spdy.SpdySession(write, client=False, on_stream=on_stream)

    async def read_client() -> None:
        try:
            while True:
                session.feed(await ws.receive_bytes())
        except (WebSocketDisconnect, RuntimeError, KeyError, spdy.SpdyError):
            pass
        finally:
            session.shutdown()

    async def stdin() -> None:
        st = streams.get("stdin")
        if st is not None:
            while (data := await st.read()) is not None:
                await pipe.send(STDIN, data)
            await pipe.close_channel(STDIN)

    async def resize() -> None:
        st = streams.get("resize")
        if st is not None:
            while (data := await st.read()) is not None:
                await pipe.send(RESIZE, data)

    async def down() -> None:
        out = {STDOUT: streams.get("stdout"), STDERR: streams.get("stderr"), ERROR: streams.get("error")}
        while (item := await pipe.recv()) is not None:
            ch, data = item
            st = out.get(ch)
            if data and st is not None:
                await st.write(data)
        for st in out.values():
            if st is not None:
                await st.close()

    reader = asyncio.create_task(read_client(), name="spdy-client")
    tasks: list[asyncio.Task[None]] = []
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        tasks = [asyncio.create_task(f(), name=f"spdy-{f.__name__}") for f in (stdin, resize)]
        d = asyncio.create_task(down(), name="spdy-down")
        done, _ = await asyncio.wait({d, reader}, return_when=asyncio.FIRST_COMPLETED)
        if d not in done:
            await pipe.reset("the client went away")
            d.cancel()
        tasks.append(d)
    except TimeoutError:
        await pipe.reset("the client opened no streams")
    finally:
        for t in (*tasks, reader):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        await pipe.close()


def add_routes(routes: Routes, locate: Locate) -> None:
    def route(kind: str) -> Any:
        async def stream_ws(ws: WebSocket) -> None:
            namespace, name = ws.path_params["namespace"], ws.path_params["name"]
            offer = spdy_offer(ws)
            if offer is not None:
                await _spdy(ws, kind, namespace, name, offer)
                return
            offered = subprotocols(ws)
            proto = next((p for p in PROTOCOLS if p in offered), None)
            if proto is None:
                await ws.close(code=1002, reason=f"supported subprotocols: {', '.join(PROTOCOLS)}")
                return
            await ws.accept(subprotocol=proto)
            pipe: StreamPipe | None = None
            try:
                req = stream_request(kind, namespace, name, ws.query_params)
                pipe = await (await locate(namespace, name)).open_stream(req)
            except ApiError as exc:
                await _end(ws, exc.status())
                return
            except Exception:
                log.exception("%s in %s/%s failed", kind, namespace, name)
                await _end(ws, ApiError(f"Internal error occurred: {kind} failed").status())
                return
            try:
                await _carry(ws, pipe, v5=proto.startswith("v5"))
            except Exception:
                log.exception("%s stream of %s/%s failed", kind, namespace, name)
            with contextlib.suppress(Exception):
                await ws.close()

        return stream_ws

    async def _spdy(ws: WebSocket, kind: str, namespace: str, name: str, offered: list[str]) -> None:
        try:
            if SPDY_PROTOCOL not in offered:
                raise BadRequest(f"{kind} over SPDY needs {SPDY_PROTOCOL} (offered: {', '.join(offered) or 'none'})")
            req = stream_request(kind, namespace, name, ws.query_params)
            pipe = await (await locate(namespace, name)).open_stream(req)
        except ApiError as exc:
            await deny(ws, exc)
            return
        await ws.accept(subprotocol=SPDY_PROTOCOL)
        try:
            await _carry_spdy(ws, pipe, req)
        except Exception:
            log.exception("%s stream (SPDY) of %s/%s failed", kind, namespace, name)
        with contextlib.suppress(Exception):
            await ws.close()

    for kind, path in PATHS.items():
        routes.websocket(path, route(kind))

        async def not_upgraded(request: Request, kind: str = kind) -> Response:
            err = BadRequest(
                f"{kind} needs the websocket streaming protocol (v5.channel.k8s.io / v4.channel.k8s.io: kubectl 1.30+, or 1.29 "
                "with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true); "
                "SPDY is not supported: use kubectl >= 1.30" + (" or `edgebus exec`" if kind == "exec" else "")
            )
            return JSONResponse(err.status(), status_code=err.code)

        routes.plain(path, not_upgraded, ["GET", "POST"])


async def _end(ws: WebSocket, status: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):
        await ws.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
        await ws.close()
