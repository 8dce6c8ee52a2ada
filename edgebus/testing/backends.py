"""Small real servers for mesh tests and benchmarks: an HTTP backend and an upstream DNS server.

* :class:`HttpBackend` answers ``GET /`` with its name (keep-alive), ``GET /blob?size=N&seed=S``
  with N deterministic pseudo-random bytes, and ``POST /sha256`` with the SHA-256 of the body.
* :class:`UpstreamDns` answers A queries for the names it is given (UDP and TCP) and
  NXDOMAIN otherwise; it counts the queries it saw.
* :func:`host_pod` and :func:`report_pod` make a host process a pod's stand-in: a Pod bound
  to a node, whose status reaches the cloud exactly as edged's does (the node's outbox).

``python -m edgebus.testing.backends NAME [--port P]`` runs an HTTP backend on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dns.message
import dns.rcode
import dns.rrset

from edgebus import names
from edgebus.bus import Bus
from edgebus.envelope import OP_UPDATE, Envelope
from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore


def blob(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


@dataclass
class HttpBackend:
    name: str
    host: str = "127.0.0.1"
    port: int = 0
    requests: int = 0
    server: asyncio.AbstractServer | None = None

    async def start(self) -> HttpBackend:
        self.server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                length = int(headers.get("content-length") or 0)
                url = urlsplit(target)
                self.requests += 1
                if method == "POST" and url.path == "/sha256":
                    h = hashlib.sha256()
                    left = length
                    while left:
                        chunk = await reader.read(min(left, 1 << 16))
                        if not chunk:
                            return
                        h.update(chunk)
                        left -= len(chunk)
                    body = h.hexdigest().encode()
                elif url.path == "/blob":
                    await reader.readexactly(length)
                    q = parse_qs(url.query)
                    body = blob(int(q.get("size", ["0"])[0]), int(q.get("seed", ["0"])[0]))
                else:
                    await reader.readexactly(length)
                    body = self.name.encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n" % len(body))
                writer.write(body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


class _UdpDns(asyncio.DatagramProtocol):
    def __init__(self, owner: UpstreamDns) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        out = self.owner.answer(data)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


@dataclass
class UpstreamDns:
    records: dict[str, str] = field(default_factory=dict)  # name -> IPv4 (loopback only, please)
    host: str = "127.0.0.1"
    port: int = 0
    queries: list[str] = field(default_factory=list)
    _udp: asyncio.DatagramTransport | None = None
    _tcp: asyncio.AbstractServer | None = None

    def answer(self, data: bytes) -> bytes | None:
        try:
            q = dns.message.from_wire(data)
        except Exception:
            return None
        r = dns.message.make_response(q)
        name = q.question[0].name.to_text().rstrip(".").lower()
        self.queries.append(name)
        ip = self.records.get(name)
        if ip is None:
            r.set_rcode(dns.rcode.NXDOMAIN)
        else:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", ip))
        return r.to_wire()

    async def start(self) -> UpstreamDns:
        loop = asyncio.get_running_loop()
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port)
        self.port = self._tcp.sockets[0].getsockname()[1]
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpDns(self), local_addr=(self.host, self.port))
        return self

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
            out = self.answer(await reader.readexactly(n))
            if out is not None:
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()


def pod_status(ready: bool, ip: str = "127.0.0.1") -> dict[str, Any]:
    flag = "True" if ready else "False"
    return {
        "phase": "Running",
        "podIP": ip,
        "hostIP": ip,
        "conditions": [{"type": "Ready", "status": flag}, {"type": "ContainersReady", "status": flag}],
    }


async def report_pod(edge: Bus, node: str, namespace: str, name: str, uid: str, ready: bool, ip: str = "127.0.0.1") -> None:
    """Publish a pod status into ``node``'s outbox, as edged does (edgehub forwards it)."""
    content = {"time": time.time_ns(), "uid": uid, "status": pod_status(ready, ip)}
    env = Envelope.new(source="edged", operation=OP_UPDATE, resource=PODS.plural, content=content)
    ref = names.ObjectRef(PODS.plural, namespace, name)
    await edge.js_publish(names.outbox_subject(node, names.UP_STATUS, ref), env, stream=names.STREAM_EDGE_UP)


async def host_pod(store: ObjectStore, edge: Bus, node: str, name: str, port: int, *, app: str, namespace: str = "default", ready: bool = True) -> dict[str, Any]:
    """A Pod bound to ``node`` for a server already listening on ``port`` of the node (host
    network: the port is named ``http``), reported Running (and Ready) by the node."""
    pod = {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "host-process", "ports": [{"name": "http", "containerPort": port}]}]},
    }
    created = await store.create(PODS, pod)
    await report_pod(edge, node, namespace, name, created["metadata"]["uid"], ready)
    return created


def main() -> None:
    ap = argparse.ArgumentParser(description="an HTTP backend for mesh tests and benchmarks")
    ap.add_argument("name")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    async def run() -> None:
        b = await HttpBackend(args.name, args.host, args.port).start()
        print(b.port, flush=True)
        await asyncio.Event().wait()

    try:
        from edgebus.runtime.service import run_loop

        run_loop(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
