"""edgebus.testing.proxy.TcpProxy: forward, cut (reset), freeze (blackhole), heal, over loopback."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from edgebus.testing.proxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@pytest.fixture
def echo() -> Iterator[int]:
    srv = _EchoServer(("127.0.0.1", 0), _Echo)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, name="echo", daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(2)


@pytest.fixture
def proxy(echo: int) -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", echo)
    p.start()
    try:
        yield p
    finally:
        p.close()


def connect(p: TcpProxy, timeout: float = 2.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", p.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def roundtrip(s: socket.socket, payload: bytes) -> bytes:
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def is_dead(s: socket.socket, timeout: float = 2.0) -> bool:
    """True when the peer reset or closed the connection (within ``timeout``)."""
    s.settimeout(timeout)
    try:
        s.sendall(b"?")
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return True
    except TimeoutError:
        return False


def test_forwards_bytes(proxy: TcpProxy) -> None:
    assert proxy.mode == "up"
    with connect(proxy) as a, connect(proxy) as b:
        assert roundtrip(a, b"hello") == b"hello"
        assert roundtrip(b, b"world") == b"world"
        big = bytes(range(256)) * 4096  # 1 MiB, in many chunks
        assert roundtrip(a, big) == big


def test_cut_resets_live_connections_and_refuses_new_ones(proxy: TcpProxy) -> None:
    live = connect(proxy)
    assert roundtrip(live, b"x") == b"x"
    proxy.cut()
    assert proxy.mode == "cut"
    live.settimeout(2)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        live.sendall(b"after cut")
        if live.recv(10) == b"":  # a reset may surface as EOF on some stacks
            raise ConnectionResetError
    live.close()
    for _ in range(3):
        try:
            new = connect(proxy)
        except (ConnectionRefusedError, ConnectionResetError):
            continue
        with new:
            assert is_dead(new)


def test_heal_after_cut(proxy: TcpProxy) -> None:
    proxy.cut()
    proxy.heal()
    assert proxy.mode == "up"
    with connect(proxy) as s:
        assert roundtrip(s, b"back") == b"back"


def test_freeze_blackholes_without_closing(proxy: TcpProxy) -> None:
    s = connect(proxy)
    assert roundtrip(s, b"before") == b"before"
    proxy.freeze()
    assert proxy.mode == "frozen"
    s.sendall(b"during freeze")
    s.settimeout(0.3)
    with pytest.raises(TimeoutError):  # nothing comes back, and the connection is not closed
        s.recv(100)
    # Still open: more writes are accepted (they just go nowhere).
    s.sendall(b"more")
    with pytest.raises(TimeoutError):
        s.recv(100)
    s.close()


def test_freeze_does_not_spin(proxy: TcpProxy) -> None:
    s = connect(proxy)
    assert roundtrip(s, b"x") == b"x"
    proxy.freeze()
    s.sendall(b"pending bytes the proxy must not busy-poll on" * 100)
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(0.5)
    cpu = time.process_time() - cpu0
    assert time.monotonic() - wall0 >= 0.5
    assert cpu < 0.15, f"frozen proxy burnt {cpu:.3f}s CPU in 0.5s"
    s.close()


def test_new_connections_while_frozen_are_refused(proxy: TcpProxy) -> None:
    proxy.freeze()
    try:
        new = connect(proxy)
    except (ConnectionRefusedError, ConnectionResetError):
        return
    with new:
        assert is_dead(new)


def test_heal_after_freeze(proxy: TcpProxy) -> None:
    frozen = connect(proxy)
    assert roundtrip(frozen, b"a") == b"a"
    proxy.freeze()
    proxy.heal()
    assert proxy.mode == "up"
    # Connections that lived through the freeze are reset (their streams lost bytes) ...
    assert is_dead(frozen)
    frozen.close()
    # ... and new ones work.
    with connect(proxy) as s:
        assert roundtrip(s, b"healed") == b"healed"


def test_upstream_down_closes_client(echo: int) -> None:
    # A proxy to a port nobody listens on: the client is closed, the proxy keeps running.
    with socket.socket() as tmp:
        tmp.bind(("127.0.0.1", 0))
        dead_port = tmp.getsockname()[1]
    p = TcpProxy("127.0.0.1", dead_port)
    p.start()
    try:
        with connect(p) as s:
            assert is_dead(s)
        p.target = ("127.0.0.1", echo)
        with connect(p) as s:
            assert roundtrip(s, b"ok") == b"ok"
    finally:
        p.close()


def test_close_stops_the_thread(echo: int) -> None:
    p = TcpProxy("127.0.0.1", echo)
    p.start()
    s = connect(p)
    assert roundtrip(s, b"x") == b"x"
    p.close()
    assert not p._thread.is_alive()
    assert is_dead(s)
    s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", p.port), timeout=1).close()
