"""TCP streams between edge nodes over NATS: no inbound port on any node.

Opening: the client node's edgemesh asks the endpoint's node (request/reply on
``edgebus.mesh.<node>.<client>.open``, content ``{tunnel, ip, port, window}``, answered on
``edgebus.mesh.<client>.<node>.r.<tunnel>``). That node dials the endpoint (only addresses of
its own endpoints: it is no open relay) and answers. From then on each side publishes frames
to the other's tunnel subject (``edgebus.mesh.<to>.<from>.t.<tunnel>``, core NATS). Every
subject names both nodes, and nats-server lets a node publish only as ``<from>`` and receive
only as ``<to>``: a frame's sender is known, and no third node can read or inject one.

A frame is ``type (1 byte) | value (8 bytes, big-endian) | payload``:

* ``D`` data: value = offset of the payload's first byte in the stream; anything but the
  next expected offset (a lost or reordered frame) resets the tunnel: a stream is intact
  or it is gone;
* ``A`` window ack: value = bytes written into the local socket so far. A side never has
  more than ``window`` bytes unacknowledged, and acknowledges only while its socket takes
  the data, so a fast sender towards a slow reader is paused end to end and neither side
  buffers more than ``window`` (+ one chunk) per direction;
* ``F`` end of stream: value = total bytes sent (the socket half-closes on the other side);
* ``R`` reset: payload = reason; the other side aborts its socket;
* ``K`` keepalive: sent by a side that sent nothing for ``keepalive`` seconds; a side that
  hears nothing for ``idle_timeout`` resets the tunnel (the peer or the path is gone).

A tunnel ends cleanly once both sides sent ``F``; a reset, a socket error or a peer that
went silent ends it at once. A frame for an unknown tunnel is answered with ``R`` (the
peer restarted); unparseable frames are counted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Gauge

from edgebus import names
from edgebus.bus import Bus, BusMsg, NoResponders, NotConnected, RemoteError, RequestTimeout
from edgebus.envelope import OP_QUERY, Envelope
from edgebus.errors import ApiError, BadRequest, NotFound, Unavailable
from services.edgemesh.pipe import Conn

log = logging.getLogger("edgebus.edgemesh.tunnel")

HEADER = struct.Struct("!cQ")
DATA, ACK, FIN, RST, KEEP = b"D", b"A", b"F", b"R", b"K"
KINDS = (DATA, ACK, FIN, RST, KEEP)

TUNNELS = Gauge("edgebus_mesh_tunnels", "Open tunnels", ["side"])
TUNNEL_BYTES = Counter("edgebus_mesh_tunnel_bytes_total", "Bytes carried by tunnels", ["direction"])
TUNNEL_RESETS = Counter("edgebus_mesh_tunnel_resets_total", "Tunnels reset, by reason", ["reason"])
BAD_FRAMES = Counter("edgebus_mesh_bad_frames_total", "Tunnel frames dropped as unparseable or unknown")


def frame(kind: bytes, value: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, value) + payload


def parse_frame(data: bytes) -> tuple[bytes, int, bytes]:
    if len(data) < HEADER.size:
        raise ValueError("short frame")
    kind, value = HEADER.unpack_from(data)
    if kind not in KINDS:
        raise ValueError(f"unknown frame type {kind!r}")
    return kind, value, data[HEADER.size :]


class Tunnel:
    """One end of a tunnel, bound to one local TCP connection (it is that connection's sink)."""

    def __init__(self, mesh: Tunnels, tid: str, peer_node: str, conn: Conn, side: str) -> None:
        self.mesh = mesh
        self.id = tid
        self.peer_node = peer_node
        self.peer = names.mesh_tunnel_subject(peer_node, mesh.node, tid)  # where the other side receives
        self.me = names.mesh_tunnel_subject(mesh.node, peer_node, tid)
        self.conn = conn
        self.side = side
        self.window = mesh.window
        self.chunk = mesh.chunk
        self.tx = 0  # bytes sent
        self.acked = 0  # bytes the peer wrote out
        self.rx = 0  # bytes received
        self.rx_acked = 0  # bytes we acknowledged
        self.buf = bytearray()
        self.reading_paused = False
        self.socket_writable = True
        self.local_eof = False
        self.fin_sent = False
        self.peer_fin: int | None = None
        self.closed = False
        self.wake = asyncio.Event()
        now = time.monotonic()
        self.last_rx = now
        self.last_tx = now
        self.task: asyncio.Task[None] | None = None
        mesh.tunnels[(peer_node, tid)] = self  # frames may arrive before the tunnel starts
        TUNNELS.labels(side).inc()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._send_loop(), name=f"tunnel:{self.id}")
        self.conn.attach(self)

    # -- the local socket (Sink) ------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) >= self.chunk and not self.reading_paused:
            self.reading_paused = True
            self.conn.pause_reading()
        self.wake.set()

    def feed_eof(self) -> None:
        self.local_eof = True
        self.wake.set()

    def writable(self, ok: bool) -> None:
        self.socket_writable = ok
        if ok:
            self.wake.set()  # acknowledge what the socket took meanwhile

    def lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.reset("local connection closed" if exc is None else f"local connection failed: {exc}", notify=True)

    # -- frames from the peer -----------------------------------------------------------
    def on_frame(self, kind: bytes, value: int, payload: bytes) -> None:
        self.last_rx = time.monotonic()
        if kind == DATA:
            if value != self.rx or self.peer_fin is not None:
                self.reset(f"data at offset {value}, expected {self.rx}", notify=True)
                return
            self.rx += len(payload)
            if self.rx - self.rx_acked > self.window + self.chunk:
                self.reset("peer exceeded the window", notify=True)
                return
            TUNNEL_BYTES.labels("in").inc(len(payload))
            self.conn.write(payload)
            if self.socket_writable and self.rx - self.rx_acked >= self.window // 4:
                self.wake.set()
        elif kind == ACK:
            if self.acked < value <= self.tx:
                self.acked = value
                self.wake.set()
        elif kind == FIN:
            if value != self.rx:
                self.reset(f"end at offset {value}, received {self.rx}", notify=True)
                return
            self.peer_fin = value
            self.conn.write_eof()
            self.wake.set()
        elif kind == RST:
            TUNNEL_RESETS.labels("peer").inc()
            log.debug("tunnel %s reset by peer: %s", self.id, payload[:200].decode(errors="replace"))
            self.reset("peer reset", notify=False)

    # -- sending --------------------------------------------------------------------------
    async def _publish(self, kind: bytes, value: int, payload: bytes = b"") -> None:
        await self.mesh.bus.publish(self.peer, frame(kind, value, payload))
        self.last_tx = time.monotonic()

    async def _send_loop(self) -> None:
        try:
            while not self.closed:
                await self.wake.wait()
                self.wake.clear()
                if self.closed:
                    return
                if self.socket_writable and self.rx > self.rx_acked:
                    self.rx_acked = self.rx
                    await self._publish(ACK, self.rx)
                while self.buf and not self.closed:
                    credit = self.window - (self.tx - self.acked)
                    if credit <= 0:
                        break
                    n = min(len(self.buf), self.chunk, credit)
                    payload = bytes(self.buf[:n])
                    del self.buf[:n]
                    await self._publish(DATA, self.tx, payload)
                    self.tx += n
                    TUNNEL_BYTES.labels("out").inc(n)
                    if self.reading_paused and len(self.buf) < self.chunk:
                        self.reading_paused = False
                        self.conn.resume_reading()
                if self.local_eof and not self.buf and not self.fin_sent and not self.closed:
                    self.fin_sent = True
                    await self._publish(FIN, self.tx)
                if self.fin_sent and self.peer_fin is not None:
                    self._finish()
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the bus is gone, or the peer subject refused: end the stream
            self.reset(f"send failed: {exc}", notify=False)

    async def keepalive(self, now: float) -> None:
        if self.closed:
            return
        if now - self.last_rx > self.mesh.idle_timeout:
            TUNNEL_RESETS.labels("idle").inc()
            self.reset(f"peer silent for {now - self.last_rx:.1f}s", notify=True)
        elif now - self.last_tx > self.mesh.keepalive:
            try:
                await self._publish(KEEP, 0)
            except Exception as exc:
                self.reset(f"keepalive failed: {exc}", notify=False)

    # -- ending ---------------------------------------------------------------------------
    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.conn.close()
        self._forget()

    def reset(self, reason: str, *, notify: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.wake.set()
        log.debug("tunnel %s (%s) reset: %s", self.id, self.side, reason)
        self.conn.abort()
        if notify:
            self.mesh.spawn(self.mesh.bus.publish(self.peer, frame(RST, 0, reason.encode()[:200])))
        self._forget()

    def _forget(self) -> None:
        if self.mesh.tunnels.pop((self.peer_node, self.id), None) is not None:
            TUNNELS.labels(self.side).dec()


Targets = Callable[[], set[tuple[str, int]]]


class Tunnels:
    """Every tunnel of this node, both the ones it opened (client side) and the ones it
    accepted (server side), with one subscription for all their frames."""

    def __init__(
        self,
        bus: Bus,
        node: str,
        targets: Targets,
        *,
        window: int = 1024 * 1024,
        chunk: int = 64 * 1024,
        keepalive: float = 5.0,
        idle_timeout: float = 15.0,
        connect_timeout: float = 3.0,
        max_tunnels: int = 1024,
    ) -> None:
        self.bus = bus
        self.node = node
        self.targets = targets
        self.window = window
        self.chunk = chunk
        self.keepalive = keepalive
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.max_tunnels = max_tunnels
        #: (peer node, tunnel id) -> tunnel
        self.tunnels: dict[tuple[str, str], Tunnel] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception as exc:
                log.debug("background send failed: %s", exc)

        t = asyncio.get_running_loop().create_task(run())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- client side ----------------------------------------------------------------------
    async def open(self, node: str, ip: str, port: int, conn: Conn) -> Tunnel:
        """A tunnel to ``ip:port`` on ``node``, carrying ``conn``; raises Unavailable."""
        if len(self.tunnels) >= self.max_tunnels:
            raise Unavailable(f"too many tunnels ({self.max_tunnels})")
        tid = secrets.token_hex(8)
        t = Tunnel(self, tid, node, conn, "client")
        env = Envelope.new(
            source="edgemesh", operation=OP_QUERY, resource="tunnel", content={"tunnel": tid, "ip": ip, "port": port, "window": self.window}
        )
        try:
            await self.bus.call(
                names.mesh_open_subject(node, self.node), env, timeout=self.connect_timeout + 1, reply=names.mesh_reply_subject(self.node, node, tid)
            )
        except (NoResponders, NotConnected, RequestTimeout, RemoteError) as exc:
            t._forget()
            raise Unavailable(f"no tunnel to {ip}:{port} on {node}: {exc}") from None
        if t.closed:
            raise Unavailable(f"the tunnel to {ip}:{port} on {node} was reset while opening")
        t.start()
        return t

    # -- server side ----------------------------------------------------------------------
    async def accept(self, content: Any, peer: str) -> dict[str, Any]:
        """Handle node ``peer``'s open request: dial the endpoint, register the tunnel."""
        if not isinstance(content, dict):
            raise BadRequest("open needs a map")
        tid, ip, port = content.get("tunnel"), content.get("ip"), content.get("port")
        if not isinstance(tid, str) or not isinstance(ip, str) or not isinstance(port, int) or isinstance(port, bool):
            raise BadRequest("open needs tunnel, ip and port")
        try:
            names.mesh_tunnel_subject(self.node, peer, tid)
        except names.InvalidName as exc:
            raise BadRequest(str(exc)) from None
        if (peer, tid) in self.tunnels:
            raise BadRequest(f"tunnel {tid} exists")
        if (ip, port) not in self.targets():
            raise NotFound(f"{ip}:{port} is not an endpoint on node {self.node}")
        if len(self.tunnels) >= self.max_tunnels:
            raise Unavailable(f"too many tunnels ({self.max_tunnels})")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(Conn, ip, port)
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot connect to {ip}:{port} on node {self.node}: {exc}") from None
        t = Tunnel(self, tid, peer, conn, "server")
        t.start()
        return {"tunnel": tid, "window": self.window}

    async def on_open(self, msg: BusMsg) -> None:
        """The open request handler (each request in a task of its own: a slow dial never
        holds up the next request)."""
        self.spawn(self._answer_open(msg))

    async def _answer_open(self, msg: BusMsg) -> None:
        from edgebus.bus import error_reply

        try:
            _, peer = names.parse_mesh_open_subject(msg.subject)
            env = Envelope.decode(msg.data)
        except Exception as exc:
            BAD_FRAMES.inc()
            await msg.respond(error_reply(None, source="edgemesh", message=str(exc), code=400, reason="BadRequest").encode())
            return
        try:
            out = await self.accept(env.content, peer)
            await msg.respond(env.reply(source="edgemesh", content=out).encode())
        except ApiError as exc:
            await msg.respond(error_reply(env, source="edgemesh", message=exc.message, code=exc.code, reason=exc.reason).encode())

    # -- frames -----------------------------------------------------------------------------
    async def on_frame(self, msg: BusMsg) -> None:
        try:
            _, peer, tid = names.parse_mesh_tunnel_subject(msg.subject)
            kind, value, payload = parse_frame(msg.data)
        except (names.InvalidName, ValueError):
            BAD_FRAMES.inc()
            return
        t = self.tunnels.get((peer, tid))
        if t is None:
            BAD_FRAMES.inc()
            if kind != RST:
                self.spawn(self.bus.publish(names.mesh_tunnel_subject(peer, self.node, tid), frame(RST, 0, b"unknown tunnel")))
            return
        t.on_frame(kind, value, payload)

    async def sweep(self) -> None:
        """Keepalives and idle resets, once a second (a supervised task)."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for t in list(self.tunnels.values()):
                if t.task is not None:  # started (a client tunnel awaiting its reply is not)
                    await t.keepalive(now)

    def close_all(self) -> None:
        for t in list(self.tunnels.values()):
            t.reset("edgemesh stopping", notify=True)
