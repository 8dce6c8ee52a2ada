"""A flow-controlled byte pipe between two services over core NATS, with channels: how
``kubectl exec/attach/port-forward`` streams travel between the apiserver and a node's edged.

The framing and flow control are edgemesh's tunnel's (``services/edgemesh/tunnel.py``): a
frame is ``type (1 byte) | value (8 bytes, big-endian) | payload``:

* ``D`` data: value = offset of the payload in this direction's byte sequence, payload =
  channel (1 byte) then the bytes. Anything but the next expected offset (a lost or
  reordered frame) resets the pipe: a stream is intact or it is gone;
* ``A`` window ack: value = bytes the receiver has handed on (written to its websocket, its
  container stream, ...). A sender never has more than ``window`` bytes unacknowledged,
  so a fast producer towards a slow consumer is paused end to end;
* ``C`` channel close: payload = the channel (standard input's end, say);
* ``F`` end: value = total bytes sent; ``R`` reset: payload = reason;
* ``K`` keepalive: sent after ``keepalive`` seconds without sending; a side that hears
  nothing for ``idle_timeout`` resets (the peer, its process or the path is gone).

Each side publishes to the subject the other receives on. No time cap: a pipe lives as
long as both sides do.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable

from edgebus.bus import Bus, BusMsg

log = logging.getLogger("edgebus.streampipe")

HEADER = struct.Struct("!cQ")
DATA, ACK, CLOSE, FIN, RST, KEEP = b"D", b"A", b"C", b"F", b"R", b"K"
KINDS = (DATA, ACK, CLOSE, FIN, RST, KEEP)
WINDOW = 256 * 1024
CHUNK = 32 * 1024


class PipeReset(Exception):
    """The pipe was reset (by the peer, by silence, or by a gap)."""


def frame(kind: bytes, value: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, value) + payload


def parse_frame(data: bytes) -> tuple[bytes, int, bytes]:
    if len(data) < HEADER.size:
        raise ValueError("short frame")
    kind, value = HEADER.unpack_from(data)
    if kind not in KINDS:
        raise ValueError(f"unknown frame type {kind!r}")
    return kind, value, data[HEADER.size :]


#: what :meth:`StreamPipe.recv` yields: (channel, bytes) data, (channel, None) a channel's end
Item = tuple[int, bytes | None]


class StreamPipe:
    """One end of a pipe. ``send_to`` is where the peer receives; call :meth:`start` with
    the subject this end receives on (subscribe before the peer may send)."""

    def __init__(
        self,
        bus: Bus,
        send_to: str,
        *,
        window: int = WINDOW,
        keepalive: float = 10.0,
        idle_timeout: float = 45.0,
    ) -> None:
        self.bus = bus
        self.send_to = send_to
        self.window = window
        self.keepalive = keepalive
        self.idle_timeout = idle_timeout
        self.tx = 0
        self.acked = 0
        self.rx = 0
        self.rx_handed = 0
        self.rx_acked = 0
        self.items: asyncio.Queue[Item | None] = asyncio.Queue()
        self.credit = asyncio.Event()
        self.closed = False
        self.reset_reason: str | None = None
        self.peer_fin = False
        self.fin_sent = False
        self._unsub: Callable[[], Awaitable[None]] | None = None
        self._keeper: asyncio.Task[None] | None = None
        now = time.monotonic()
        self.last_rx = now
        self.last_tx = now
        self._send_lock = asyncio.Lock()

    async def start(self, receive_on: str) -> None:
        self._unsub = await self.bus.subscribe(receive_on, self._on_msg)
        self._keeper = asyncio.get_running_loop().create_task(self._keep(), name=f"pipe-keepalive:{receive_on[-12:]}")

    # -- receiving ----------------------------------------------------------------------
    async def _on_msg(self, msg: BusMsg) -> None:
        try:
            kind, value, payload = parse_frame(msg.data)
        except ValueError:
            return
        self.last_rx = time.monotonic()
        if self.closed:
            return
        if kind == DATA:
            if value != self.rx or self.peer_fin or not payload:
                await self.reset(f"data at offset {value}, expected {self.rx}")
                return
            self.rx += len(payload) - 1
            if self.rx - self.rx_acked > self.window + CHUNK:
                await self.reset("peer exceeded the window")
                return
            self.items.put_nowait((payload[0], payload[1:]))
        elif kind == ACK:
            if self.acked < value <= self.tx:
                self.acked = value
                self.credit.set()
        elif kind == CLOSE and payload:
            self.items.put_nowait((payload[0], None))
        elif kind == FIN:
            self.peer_fin = True
            self.items.put_nowait(None)
        elif kind == RST:
            self._abort(payload[:200].decode(errors="replace") or "reset by peer")

    async def recv(self) -> Item | None:
        """The next item; None once the peer has ended. Raises :class:`PipeReset`. Calling
        it again acknowledges what the previous call returned."""
        await self._ack_handed()
        if self.reset_reason is not None and self.items.empty():
            raise PipeReset(self.reset_reason)
        item = await self.items.get()
        if item is None:
            if self.reset_reason is not None:
                raise PipeReset(self.reset_reason)
            return None
        ch, data = item
        if data:
            self.rx_handed += len(data)
        return item

    async def _ack_handed(self) -> None:
        if self.closed or self.rx_handed <= self.rx_acked:
            return
        if self.rx_handed - self.rx_acked >= self.window // 4 or self.items.empty():
            self.rx_acked = self.rx_handed
            await self._publish(ACK, self.rx_acked)

    # -- sending ------------------------------------------------------------------------
    async def _publish(self, kind: bytes, value: int, payload: bytes = b"") -> None:
        await self.bus.publish(self.send_to, frame(kind, value, payload))
        self.last_tx = time.monotonic()

    async def send(self, channel: int, data: bytes) -> None:
        """Send ``data`` on ``channel``, waiting for window credit as needed."""
        async with self._send_lock:
            view = memoryview(data)
            while view:
                if self.reset_reason is not None or self.closed:
                    raise PipeReset(self.reset_reason or "closed")
                credit = self.window - (self.tx - self.acked)
                if credit <= 0:
                    self.credit.clear()
                    await self.credit.wait()
                    continue
                n = min(len(view), CHUNK, credit)
                await self._publish(DATA, self.tx, bytes([channel]) + bytes(view[:n]))
                self.tx += n
                view = view[n:]

    async def close_channel(self, channel: int) -> None:
        async with self._send_lock:
            if not self.closed:
                await self._publish(CLOSE, self.tx, bytes([channel]))

    async def finish(self) -> None:
        """End this direction (after everything sent); the pipe closes once both ended."""
        async with self._send_lock:
            if not self.closed and not self.fin_sent:
                self.fin_sent = True
                await self._publish(FIN, self.tx)

    async def reset(self, reason: str) -> None:
        if self.closed:
            return
        try:
            await self.bus.publish(self.send_to, frame(RST, 0, reason.encode()[:200]))
        except Exception:  # the bus is gone: the peer will notice the silence
            pass
        self._abort(reason)

    def _abort(self, reason: str) -> None:
        if self.reset_reason is None:
            self.reset_reason = reason
        self.closed = True
        self.credit.set()
        self.items.put_nowait(None)

    async def _keep(self) -> None:
        while not self.closed:
            await asyncio.sleep(min(self.keepalive, self.idle_timeout) / 2)
            now = time.monotonic()
            if self.closed:
                return
            if now - self.last_rx > self.idle_timeout:
                await self.reset(f"peer silent for {now - self.last_rx:.0f}s")
                return
            if now - self.last_tx > self.keepalive:
                try:
                    await self._publish(KEEP, 0)
                except Exception as exc:
                    self._abort(f"keepalive failed: {exc}")

    async def close(self) -> None:
        """Release the subscription and the keepalive task (after finish or reset)."""
        self.closed = True
        self.credit.set()
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        if self._unsub is not None:
            unsub, self._unsub = self._unsub, None
            try:
                await unsub()
            except Exception:
                pass


__all__ = ["CHUNK", "WINDOW", "Item", "PipeReset", "StreamPipe", "frame", "parse_frame"]
