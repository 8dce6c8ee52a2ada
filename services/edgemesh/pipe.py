"""TCP connections of the proxy as asyncio protocols, and the splice between two of them.

A :class:`Conn` hands what it reads to its *sink* (another connection, or a tunnel) and
tells the sink when its own write buffer is full or drained, so the sink can stop or
resume the data flowing into it: back-pressure end to end, with bounded buffers. Protocol
callbacks rather than streams keep the local path to one write per read (no task wake-ups).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Protocol

_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Sink(Protocol):
    def feed(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...
    def writable(self, ok: bool) -> None: ...
    def lost(self, exc: Exception | None) -> None: ...


class Conn(asyncio.Protocol):
    """One TCP connection. Until a sink is attached, reading is paused and anything that
    arrived is kept (a dialed connection may receive before its sink is known)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.sink: Sink | None = None
        self._early: list[bytes] = []
        self._early_eof = False
        self._lost = False
        self._lost_exc: Exception | None = None
        self.closed = asyncio.Event()

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.sink is None:
            self.transport.pause_reading()  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if self.sink is None:
            self._early.append(data)
        else:
            self.sink.feed(data)

    def eof_received(self) -> bool:
        if self.sink is None:
            self._early_eof = True
        else:
            self.sink.feed_eof()
        return True  # keep the write side open (half-close)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.writable(False)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.writable(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost, self._lost_exc = True, exc
        self.closed.set()
        if self.sink is not None:
            self.sink.lost(exc)

    # -- use ----------------------------------------------------------------------------
    def attach(self, sink: Sink) -> None:
        self.sink = sink
        early, self._early = self._early, []
        for d in early:
            sink.feed(d)
        if self._early_eof:
            sink.feed_eof()
        if self._lost:
            sink.lost(self._lost_exc)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def write_eof(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.transport.can_write_eof():
            try:
                self.transport.write_eof()
            except OSError:
                self.transport.abort()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def close(self) -> None:
        """Close after what is buffered has been written."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once; the peer sees a reset (RST), not an orderly end of the stream."""
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            try:
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
            self.transport.abort()
        elif not self._lost:
            self._lost = True
            self.closed.set()


class _Half:
    """The sink of ``src``: writes what ``src`` reads into ``dst``."""

    def __init__(self, src: Conn, dst: Conn, splice: Splice) -> None:
        self.src, self.dst, self.splice = src, dst, splice

    def feed(self, data: bytes) -> None:
        self.dst.write(data)

    def feed_eof(self) -> None:
        self.dst.write_eof()
        self.splice.eof(self.src)

    def writable(self, ok: bool) -> None:
        # src cannot take more: stop reading what would be written into it
        if ok:
            self.dst.resume_reading()
        else:
            self.dst.pause_reading()

    def lost(self, exc: Exception | None) -> None:
        self.splice.lost(self.src, exc)


class Splice:
    """Two local connections joined: bytes, half-closes and resets pass through."""

    def __init__(self, a: Conn, b: Conn) -> None:
        self.a, self.b = a, b
        self._eof: set[int] = set()

    def start(self) -> None:
        self.a.attach(_Half(self.a, self.b, self))
        self.b.attach(_Half(self.b, self.a, self))

    def eof(self, side: Conn) -> None:
        self._eof.add(id(side))
        if len(self._eof) == 2:
            self.a.close()
            self.b.close()

    def lost(self, side: Conn, exc: Exception | None) -> None:
        other = self.b if side is self.a else self.a
        if exc is not None:
            other.abort()
        else:
            other.close()
