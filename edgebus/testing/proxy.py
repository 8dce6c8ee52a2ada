"""A loopback TCP proxy that can cut (reset) or freeze (blackhole) a link, in a thread.

Put it in the leaf link between an edge's nats-server and the hub (the hub must set
``leafnodes { no_advertise: true }``, which edgebus's hub config does) to partition a node
while both servers keep running.
"""

from __future__ import annotations

import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((listen_host, port))
        self._lsock.listen(64)
        self._lsock.setblocking(False)
        self.port = self._lsock.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._mode = "up"  # up | cut | frozen
        #: bytes forwarded from the accepted (client) side to the target, and back
        self.bytes_up = 0
        self.bytes_down = 0
        self._clients: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._run, name=f"tcpproxy:{self.port}", daemon=True)

    def start(self) -> None:
        self._sel.register(self._lsock, selectors.EVENT_READ)
        self._thread.start()

    @property
    def mode(self) -> str:
        return self._mode

    def cut(self) -> None:
        """Reset every connection and refuse new ones until :meth:`heal`."""
        with self._lock:
            self._mode = "cut"
            for s in list(self._pairs):
                self._close(s, reset=True)

    def freeze(self) -> None:
        """Stop forwarding bytes (sockets stay open): a silent blackhole."""
        with self._lock:
            self._mode = "frozen"
            for s in list(self._pairs):
                try:
                    self._sel.unregister(s)
                except Exception:
                    pass

    def thaw(self) -> None:
        """End a freeze without resetting: what was held back in the sockets flows on (a
        link that came back before either side noticed it was gone)."""
        with self._lock:
            if self._mode == "frozen":
                for s in list(self._pairs):
                    try:
                        self._sel.register(s, selectors.EVENT_READ)
                    except (KeyError, ValueError):
                        pass
            self._mode = "up"

    def heal(self) -> None:
        with self._lock:
            if self._mode == "frozen":
                for s in list(self._pairs):
                    self._close(s, reset=True)
            self._mode = "up"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            for s in list(self._pairs):
                self._close(s, reset=True)
        try:
            self._sel.unregister(self._lsock)
        except Exception:
            pass
        self._lsock.close()

    def _close(self, s: socket.socket, *, reset: bool = False) -> None:
        peer = self._pairs.pop(s, None)
        for x in (s, peer):
            if x is None:
                continue
            self._pairs.pop(x, None)
            self._clients.discard(x)
            try:
                self._sel.unregister(x)
            except Exception:
                pass
            try:
                if reset:
                    x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                x.close()
            except OSError:
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            events = self._sel.select(timeout=0.05)
            with self._lock:
                for key, _ in events:
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    if s is self._lsock:
                        try:
                            client, _ = self._lsock.accept()
                        except OSError:
                            continue
                        if self._mode != "up":
                            self._pairs[client] = client
                            self._close(client, reset=True)
                            continue
                        try:
                            upstream = socket.create_connection(self.target, timeout=2)
                        except OSError:
                            client.close()
                            continue
                        for x in (client, upstream):
                            x.setblocking(False)
                            self._sel.register(x, selectors.EVENT_READ)
                        self._pairs[client] = upstream
                        self._pairs[upstream] = client
                        self._clients.add(client)
                        continue
                    if s not in self._pairs:
                        continue
                    if self._mode == "frozen":
                        continue
                    try:
                        data = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        self._close(s)
                        continue
                    if not data:
                        self._close(s)
                        continue
                    peer = self._pairs[s]
                    if s in self._clients:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                    try:
                        peer.setblocking(True)
                        peer.sendall(data)
                        peer.setblocking(False)
                    except OSError:
                        self._close(s)
