"""SPDY/3.1 framing and sessions, as Kubernetes' streaming protocols use it (``docker/spdystream``).

Kubernetes streams exec, attach and port-forward over SPDY/3.1 (an HTTP ``Upgrade:
SPDY/3.1`` with ``X-Stream-Protocol-Version``; kubectl < 1.29, containerd's streaming
server, and, tunnelled inside websocket messages, kubectl's port-forward). What is used of
SPDY is small: streams opened with ``SYN_STREAM`` carrying headers (``streamType``,
``port``, ``requestID``), accepted with ``SYN_REPLY``, data frames with ``FIN`` for a
half-close, ``RST_STREAM``, ``PING`` (echoed), ``GOAWAY``. Header blocks are zlib-
compressed with SPDY/3's dictionary, one compression context per direction per session.
Flow-control frames are accepted and not enforced, as spdystream does.

:class:`SpdySession` is transport-neutral: bytes in through :meth:`SpdySession.feed`,
bytes out through the ``write`` coroutine it is given (a TCP socket, a websocket).
:func:`connect` opens one over TCP to an ``http://`` URL (the client side of the upgrade).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_CANCEL = 1, 5

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age allow "
    "authorization cache-control connection content-base content-encoding content-language content-length "
    "content-location content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location max-forwards pragma "
    "proxy-authenticate proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
#: the header compression dictionary of SPDY/3 (draft-mbelshe-httpbis-spdy-00, 2.6.10.1)
DICTIONARY = b"".join(struct.pack("!I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()


class SpdyError(Exception):
    pass


def encode_headers(headers: dict[str, str]) -> bytes:
    out = [struct.pack("!I", len(headers))]
    for k, v in headers.items():
        kb, vb = k.lower().encode(), v.encode()
        out += [struct.pack("!I", len(kb)), kb, struct.pack("!I", len(vb)), vb]
    return b"".join(out)


def decode_headers(block: bytes) -> dict[str, str]:
    (n,), pos, out = struct.unpack_from("!I", block), 4, {}
    for _ in range(n):
        (kl,) = struct.unpack_from("!I", block, pos)
        k = block[pos + 4 : pos + 4 + kl].decode()
        pos += 4 + kl
        (vl,) = struct.unpack_from("!I", block, pos)
        out[k] = block[pos + 4 : pos + 4 + vl].decode()
        pos += 4 + vl
    return out


def control_frame(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def data_frame(stream_id: int, flags: int, data: bytes) -> bytes:
    return struct.pack("!II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


class SpdyStream:
    def __init__(self, session: SpdySession, sid: int, headers: dict[str, str]) -> None:
        self.session = session
        self.id = sid
        self.headers = headers
        self.data: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.replied = asyncio.Event()
        self.remote_closed = False
        self.local_closed = False
        self.reset = False

    async def write(self, data: bytes) -> None:
        if self.local_closed or self.reset:
            return
        for i in range(0, len(data), 16384):
            await self.session._write(data_frame(self.id, 0, data[i : i + 16384]))

    async def close(self) -> None:
        """Half-close: the peer reads the end of this stream (stdin's EOF, say)."""
        if not self.local_closed and not self.reset:
            self.local_closed = True
            await self.session._write(data_frame(self.id, FLAG_FIN, b""))

    async def read(self) -> bytes | None:
        """The next chunk; None at the peer's end (or a reset)."""
        if self.remote_closed and self.data.empty():
            return None
        return await self.data.get()

    def _end(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self.data.put_nowait(None)


class SpdySession:
    def __init__(self, write: Callable[[bytes], Awaitable[None]], *, client: bool, on_stream: Callable[[SpdyStream], Coroutine[Any, Any, None]] | None = None) -> None:
        self._raw_write = write
        self.client = client
        self.on_stream = on_stream
        self.streams: dict[int, SpdyStream] = {}
        self.next_id = 1 if client else 2
        self.buf = bytearray()
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=DICTIONARY)
        self.lock = asyncio.Lock()
        self.closed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def _write(self, frame: bytes) -> None:
        async with self.lock:
            await self._raw_write(frame)

    def _compress(self, headers: dict[str, str]) -> bytes:
        return self.deflate.compress(encode_headers(headers)) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    async def open_stream(self, headers: dict[str, str], *, wait_reply: bool = True, timeout: float = 15.0) -> SpdyStream:
        async with self.lock:  # ids and compressed header blocks go out in order
            sid = self.next_id
            self.next_id += 2
            stream = self.streams[sid] = SpdyStream(self, sid, headers)
            payload = struct.pack("!IIBB", sid, 0, 0, 0) + self._compress(headers)
            await self._raw_write(control_frame(SYN_STREAM, 0, payload))
        if wait_reply:
            async with asyncio.timeout(timeout):
                await stream.replied.wait()
            if stream.reset:
                raise SpdyError(f"stream {headers} refused")
        return stream

    async def reply(self, stream: SpdyStream, headers: dict[str, str] | None = None) -> None:
        async with self.lock:
            await self._raw_write(control_frame(SYN_REPLY, 0, struct.pack("!I", stream.id) + self._compress(headers or {})))

    async def rst(self, stream: SpdyStream, code: int = RST_CANCEL) -> None:
        stream.reset = True
        await self._write(control_frame(RST_STREAM, 0, struct.pack("!II", stream.id, code)))

    def feed(self, data: bytes) -> None:
        """Bytes from the peer; complete frames are handled at once."""
        self.buf += data
        while len(self.buf) >= 8:
            w1, w2 = struct.unpack_from("!II", self.buf)
            length = w2 & 0xFFFFFF
            if len(self.buf) < 8 + length:
                return
            payload = bytes(self.buf[8 : 8 + length])
            flags = w2 >> 24
            del self.buf[: 8 + length]
            if w1 & 0x80000000:
                self._control((w1 >> 16) & 0x7FFF, w1 & 0xFFFF, flags, payload)
            else:
                st = self.streams.get(w1 & 0x7FFFFFFF)
                if st is not None:
                    if payload:
                        st.data.put_nowait(payload)
                    if flags & FLAG_FIN:
                        st._end()

    def _control(self, version: int, kind: int, flags: int, p: bytes) -> None:
        if version != VERSION:
            raise SpdyError(f"SPDY version {version} is not supported")
        if kind == SYN_STREAM:
            sid = struct.unpack_from("!I", p)[0] & 0x7FFFFFFF
            st = self.streams[sid] = SpdyStream(self, sid, decode_headers(self.inflate.decompress(p[10:])))
            if flags & FLAG_FIN:
                st._end()
            if self.on_stream is not None:
                t = asyncio.get_running_loop().create_task(self.on_stream(st), name=f"spdy-stream:{sid}")
                self.tasks.add(t)
                t.add_done_callback(self.tasks.discard)
        elif kind in (SYN_REPLY, HEADERS):
            sid = struct.unpack_from("!I", p)[0] & 0x7FFFFFFF
            self.inflate.decompress(p[4:])  # keep the context in step
            replied = self.streams.get(sid)
            if replied is not None:
                replied.replied.set()
                if flags & FLAG_FIN:
                    replied._end()
        elif kind == RST_STREAM:
            sid = struct.unpack_from("!I", p)[0] & 0x7FFFFFFF
            reset = self.streams.get(sid)
            if reset is not None:
                reset.reset = True
                reset.replied.set()
                reset._end()
        elif kind == PING:
            # echo the peer's pings only (a client's ids are odd, a server's even): the echo of
            # one of our own is the answer, and echoing it again would ping-pong forever
            ping_id = struct.unpack_from("!I", p)[0]
            if (ping_id % 2 == 1) != self.client:
                t = asyncio.get_running_loop().create_task(self._write(control_frame(PING, 0, p[:4])), name="spdy-ping")
                self.tasks.add(t)
                t.add_done_callback(self.tasks.discard)
        elif kind == GOAWAY:
            self.shutdown()

    def shutdown(self) -> None:
        """The connection is gone: every stream ends."""
        self.closed.set()
        for st in self.streams.values():
            st.replied.set()
            st._end()

    async def goaway(self) -> None:
        with contextlib.suppress(Exception):
            await self._write(control_frame(GOAWAY, 0, struct.pack("!II", 0, 0)))


async def connect(url: str, protocols: list[str], *, timeout: float = 10.0) -> tuple[SpdySession, str, Callable[[], Awaitable[None]]]:
    """Upgrade an HTTP POST to ``url`` to SPDY/3.1: (session, the protocol the server chose,
    a coroutine that closes the connection). A task feeds the session until the peer closes."""
    u = urlsplit(url)
    if u.scheme != "http":
        raise SpdyError(f"only http:// streaming URLs are supported, not {url}")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(u.hostname, u.port or 80)
        path = u.path + (f"?{u.query}" if u.query else "")
        req = [f"POST {path} HTTP/1.1", f"Host: {u.netloc}", "Connection: Upgrade", "Upgrade: SPDY/3.1"]
        req += [f"X-Stream-Protocol-Version: {p}" for p in protocols]
        writer.write(("\r\n".join(req) + "\r\n\r\n").encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        writer.close()
        raise SpdyError(f"upgrade refused: {lines[0]}")
    chosen = next((ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("x-stream-protocol-version:")), "")

    async def write(b: bytes) -> None:
        writer.write(b)
        await writer.drain()

    session = SpdySession(write, client=True)

    async def pump() -> None:
        try:
            while data := await reader.read(65536):
                session.feed(data)
        except (ConnectionError, SpdyError, zlib.error):
            pass
        finally:
            session.shutdown()

    task = asyncio.get_running_loop().create_task(pump(), name="spdy-read")

    async def close() -> None:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task

    return session, chosen, close


__all__ = ["DICTIONARY", "SpdyError", "SpdySession", "SpdyStream", "connect", "decode_headers", "encode_headers"]
