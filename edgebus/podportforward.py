"""``kubectl port-forward`` over both protocols kubectl speaks, shared by the cloud
apiserver and each node's metaserver (like :mod:`edgebus.podexec`: ``add_routes`` takes how
to reach the pod's node, the apiserver's through the node's leaf link, the metaserver's on
the node's own server, so port-forward works on a node cut off from the cloud).

kubectl upgrades ``/api/v1/namespaces/{ns}/pods/{name}/portforward``: 1.31+ (1.30 with
``KUBECTL_PORT_FORWARD_WEBSOCKETS=true``) to a websocket with subprotocol
``SPDY/3.1+portforward.k8s.io`` and speaks SPDY inside its binary messages; older ones to
SPDY/3.1 itself (``portforward.k8s.io``, :mod:`edgebus.runtime.spdyupgrade`). Either way,
for every local connection it opens an ``error`` and a ``data`` stream (headers ``port``,
``requestID``). Each data stream becomes one forwarded connection on the pod's node
(edged's ``stream`` with kind ``portforward``: CRI ``PortForward``, so containerd connects
inside the pod's network namespace), its bytes carried in a :class:`StreamPipe` over NATS.
Several ports and any number of connections at once; a refused connection is reported on
its error stream, as Kubernetes does, and ends only that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from edgebus import spdy
from edgebus.edgedclient import EdgedClient
from edgebus.errors import ApiError, BadRequest
from edgebus.podstream import Locate, deny, spdy_offer, subprotocols
from edgebus.streampipe import StreamPipe
from edgebus.kubehttp import Routes

log = logging.getLogger("edgebus.podportforward")

PATH = "/api/v1/namespaces/{namespace}/pods/{name}/portforward"
PORTFORWARD = "portforward.k8s.io"
TUNNEL = f"SPDY/3.1+{PORTFORWARD}"
DATA, ERROR = 1, 3


async def forward(edged: EdgedClient, namespace: str, name: str, port: int, err: spdy.SpdyStream | None, data: spdy.SpdyStream) -> None:
    """One forwarded connection: the data stream to and from the pod's port."""
    try:
        pipe: StreamPipe = await edged.open_stream({"kind": "portforward", "namespace": namespace, "name": name, "port": port}, timeout=15.0)
    except ApiError as exc:
        if err is not None:
            await err.write(f"error forwarding port {port} to pod {name}: {exc.message}".encode())
            await err.close()
        await data.close()
        return

    async def up() -> None:  # kubectl -> the pod
        while (chunk := await data.read()) is not None:
            await pipe.send(DATA, chunk)
        await pipe.close_channel(DATA)

    async def down() -> None:  # the pod -> kubectl
        while (item := await pipe.recv()) is not None:
            ch, chunk = item
            if chunk is None:
                continue
            if ch == DATA:
                await data.write(chunk)
            elif ch == ERROR and err is not None:
                await err.write(chunk)

    u = asyncio.create_task(up(), name="pf-up")
    try:
        await down()
    except Exception as exc:
        log.debug("port-forward %s/%s:%d ended: %s", namespace, name, port, exc)
    finally:
        u.cancel()
        with contextlib.suppress(BaseException):
            await u
        if pipe.peer_fin:
            with contextlib.suppress(Exception):
                await pipe.finish()
        elif not pipe.closed:
            await pipe.reset("the client's connection ended")
        await pipe.close()
        with contextlib.suppress(Exception):
            await data.close()
            if err is not None:
                await err.close()


def _protocol(ws: WebSocket) -> str:
    """The protocol to answer with (``BadRequest`` when kubectl offered neither)."""
    offer = spdy_offer(ws)
    if offer is not None:  # kubectl < 1.31: plain SPDY/3.1, the same streams
        if PORTFORWARD not in offer:
            raise BadRequest(f"port-forward over SPDY needs {PORTFORWARD}")
        return PORTFORWARD
    if TUNNEL not in subprotocols(ws):
        raise BadRequest(f"port-forward needs the websocket subprotocol {TUNNEL}")
    return TUNNEL


async def _serve(ws: WebSocket, edged: EdgedClient, namespace: str, name: str) -> None:
    """kubectl's SPDY session: a forwarded connection for each data stream, until it goes away."""
    errors: dict[str, spdy.SpdyStream] = {}

    async def on_stream(st: spdy.SpdyStream) -> None:
        await session.reply(st)
        kind, rid = st.headers.get("streamtype"), st.headers.get("requestid", "")
        try:
            port = int(st.headers.get("port", ""))
        except ValueError:
            await session.rst(st, spdy.RST_PROTOCOL_ERROR)
            return
        if kind == "error":
            errors[rid] = st
        elif kind == "data":
            await forward(edged, namespace, name, port, errors.pop(rid, None), st)

    async def write(b: bytes) -> None:
        await ws.send_bytes(b)

    session = spdy.SpdySession(write, client=False, on_stream=on_stream)
    try:
        while True:
            session.feed(await ws.receive_bytes())
    except (WebSocketDisconnect, RuntimeError, KeyError):
        pass
    except Exception as exc:  # a SpdyError among them: this session ends, the server serves on
        log.info("port-forward to %s/%s: %s", namespace, name, exc)
    finally:
        session.shutdown()
        for t in list(session.tasks):
            t.cancel()
        with contextlib.suppress(Exception):
            await ws.close()


def add_routes(routes: Routes, locate: Locate) -> None:
    async def portforward_ws(ws: WebSocket) -> None:
        namespace, name = ws.path_params["namespace"], ws.path_params["name"]
        try:
            proto = _protocol(ws)
            edged = await locate(namespace, name)
        except ApiError as exc:
            await deny(ws, exc)
            return
        await ws.accept(subprotocol=proto)
        await _serve(ws, edged, namespace, name)

    routes.websocket(PATH, portforward_ws)

    async def not_upgraded(request: Request) -> Response:
        err = BadRequest(f"port-forward needs an upgrade to SPDY/3.1 ({PORTFORWARD}) or to a websocket ({TUNNEL})")
        return JSONResponse(err.status(), status_code=err.code)

    routes.plain(PATH, not_upgraded, ["GET", "POST"])
