"""edgebus.spdy: SPDY/3.1 frames and sessions, two sessions wired back to back."""

from __future__ import annotations

import asyncio
import struct
import zlib

import pytest

from edgebus import spdy
from services.edged.streaming import check_request, descendants


def test_dictionary_is_spdy3s() -> None:
    d = spdy.DICTIONARY
    assert len(d) == 1423
    assert d[:16] == b"\x00\x00\x00\x07options\x00\x00\x00\x04h"
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    # a header block compressed with it inflates only with it
    c = zlib.compressobj(zdict=d)
    block = c.compress(spdy.encode_headers({"streamType": "stdin"})) + c.flush(zlib.Z_SYNC_FLUSH)
    assert spdy.decode_headers(zlib.decompressobj(zdict=d).decompress(block)) == {"streamtype": "stdin"}
    with pytest.raises(zlib.error):
        zlib.decompressobj().decompress(block)


def test_frames() -> None:
    f = spdy.control_frame(spdy.PING, 0, struct.pack("!I", 7))
    assert f[:2] == b"\x80\x03" and f[2:4] == b"\x00\x06" and f[5:8] == b"\x00\x00\x04"
    d = spdy.data_frame(3, spdy.FLAG_FIN, b"abc")
    assert d == b"\x00\x00\x00\x03\x01\x00\x00\x03abc"


async def test_sessions_back_to_back() -> None:
    accepted: list[spdy.SpdyStream] = []
    server: spdy.SpdySession

    async def to_server(b: bytes) -> None:
        server.feed(b)

    async def to_client(b: bytes) -> None:
        client.feed(b)

    async def on_stream(st: spdy.SpdyStream) -> None:
        accepted.append(st)
        await server.reply(st)
        while (data := await st.read()) is not None:  # echo, upper-cased, until the client's end
            await st.write(data.upper())
        await st.close()

    client = spdy.SpdySession(to_server, client=True)
    server = spdy.SpdySession(to_client, client=False, on_stream=on_stream)
    a = await client.open_stream({"streamType": "stdin", "port": "80"})
    b = await client.open_stream({"streamType": "stdout"})
    assert (a.id, b.id) == (1, 3)
    assert accepted[0].headers == {"streamtype": "stdin", "port": "80"}
    await a.write(b"hello " * 10000)  # split in several data frames
    await a.close()
    got = b""
    while (c := await asyncio.wait_for(a.read(), 5)) is not None:
        got += c
    assert got == b"HELLO " * 10000
    await client.rst(b)
    await client._write(spdy.control_frame(spdy.PING, 0, struct.pack("!I", 9)))  # echoed once, harmless
    await asyncio.sleep(0)
    assert accepted[1].remote_closed  # the reset ended it on the server
    server.shutdown()
    await asyncio.sleep(0)


async def test_a_ping_is_answered_once_not_echoed_back_and_forth() -> None:
    """SPDY/3.1 section 2.6.5: a receiver echoes the peer's pings (a client's ids are odd, a
    server's even) and takes its own coming back as the answer."""
    pings: list[tuple[str, int]] = []

    def count(direction: str, b: bytes) -> None:
        if b[0] & 0x80 and struct.unpack("!H", b[2:4])[0] == spdy.PING:
            pings.append((direction, struct.unpack("!I", b[8:12])[0]))

    async def to_server(b: bytes) -> None:
        count("to-server", b)
        server.feed(b)

    async def to_client(b: bytes) -> None:
        count("to-client", b)
        client.feed(b)

    client = spdy.SpdySession(to_server, client=True)
    server = spdy.SpdySession(to_client, client=False)
    await client._write(spdy.control_frame(spdy.PING, 0, struct.pack("!I", 9)))
    await server._write(spdy.control_frame(spdy.PING, 0, struct.pack("!I", 4)))
    for _ in range(20):  # the echo tasks run; an echo of an echo would keep them coming
        await asyncio.sleep(0)
    assert sorted(pings) == [("to-client", 4), ("to-client", 9), ("to-server", 4), ("to-server", 9)]
    assert not client.tasks and not server.tasks


def test_stream_requests_are_checked() -> None:
    ok = check_request({"id": "x", "reply": "r", "command": ["sh"], "stdin": True, "tty": True})
    assert ok["kind"] == "exec" and ok["tty"] and not ok["stdout"]
    for bad in ({"id": "x", "reply": "r", "command": [], "stdout": True}, {"id": "x", "reply": "r", "command": ["a"]}, {"reply": "r", "command": ["a"], "stdout": True}, {"id": "x", "reply": "r", "kind": "rm", "stdout": True}):
        with pytest.raises(Exception, match="required|command|at least one|unknown"):
            check_request(bad)


def test_descendants_of_a_command() -> None:
    tree = {10: 1, 11: 10, 12: 11, 20: 1, 21: 20, 13: 10}
    assert descendants(tree, {10}) == {10, 11, 12, 13}
    assert descendants(tree, {99}) == set()
