"""The node's DNS server (UDP and TCP), built on dnspython.

Cluster names are answered from the service table (``logic.resolve_name``): A records of
the Services' node-local addresses, authoritative, with a short TTL; NXDOMAIN for unknown
names in the cluster domain. Everything else is forwarded to the upstream resolver (over
UDP, or TCP when the query came over TCP). A malformed query gets FORMERR (or is dropped
when not even its header is readable); an upstream that does not answer gives SERVFAIL.
Nothing here ever ends the server.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from prometheus_client import Counter

from services.edgemesh import logic

log = logging.getLogger("edgebus.edgemesh.dns")

QUERIES = Counter("edgebus_mesh_dns_queries_total", "DNS queries answered, by outcome", ["outcome"])


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int = 53


def parse_upstreams(spec: str, resolv_conf: str = "/etc/resolv.conf") -> list[Upstream]:
    """``ip[:port]`` items, comma-separated; empty: the nameservers of ``resolv_conf``."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        out.append(Upstream(host or item, int(port) if port else 53))
    if out or spec.strip():
        return out
    try:
        with open(resolv_conf) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append(Upstream(parts[1]))
    except OSError:
        pass
    return out


class Resolver:
    """Answers one DNS query (wire format in, wire format out)."""

    def __init__(
        self,
        table: Callable[[], logic.Table],
        *,
        domain: str,
        default_namespace: str,
        upstreams: list[Upstream],
        ttl: int = 5,
        timeout: float = 2.0,
    ) -> None:
        self.table = table
        self.domain = domain
        self.default_namespace = default_namespace
        self.upstreams = upstreams
        self.ttl = ttl
        self.timeout = timeout

    async def answer(self, wire: bytes, *, tcp: bool = False) -> bytes | None:
        try:
            q = dns.message.from_wire(wire)
        except Exception as exc:
            QUERIES.labels("formerr").inc()
            log.debug("malformed query: %s", exc)
            return _formerr(wire)
        if q.opcode() != dns.opcode.QUERY or len(q.question) != 1 or q.flags & dns.flags.QR:
            QUERIES.labels("notimp").inc()
            r = dns.message.make_response(q)
            r.set_rcode(dns.rcode.NOTIMP if q.opcode() != dns.opcode.QUERY else dns.rcode.FORMERR)
            return r.to_wire()
        question = q.question[0]
        table = self.table()
        res = logic.resolve_name(question.name.to_text(), self.domain, self.default_namespace, lambda ns, n: table.lookup(ns, n) is not None)
        if res.kind == logic.FORWARD:
            return await self._forward(q, tcp=tcp)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA | dns.flags.RA
        if res.kind == logic.NXDOMAIN or res.service is None:
            QUERIES.labels("nxdomain").inc()
            r.set_rcode(dns.rcode.NXDOMAIN)
            return r.to_wire()
        entry = table.lookup(*res.service)
        QUERIES.labels("answer").inc()
        if entry is not None and question.rdclass == dns.rdataclass.IN and question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            addrs = entry.dns_addresses()
            if addrs:
                r.answer.append(dns.rrset.from_text_list(question.name, self.ttl, "IN", "A", addrs))
        return r.to_wire()  # other types of a known name: NOERROR, no answer

    async def _forward(self, q: dns.message.Message, *, tcp: bool) -> bytes:
        for up in self.upstreams:
            try:
                if tcp:
                    resp = await dns.asyncquery.tcp(q, up.host, port=up.port, timeout=self.timeout)
                else:
                    resp = await dns.asyncquery.udp(q, up.host, port=up.port, timeout=self.timeout, ignore_unexpected=True)
                QUERIES.labels("forwarded").inc()
                return resp.to_wire()
            except (dns.exception.DNSException, OSError, EOFError) as exc:
                log.info("upstream %s:%d failed for %s: %r", up.host, up.port, q.question[0].name, exc)
        QUERIES.labels("servfail").inc()
        r = dns.message.make_response(q)
        r.set_rcode(dns.rcode.SERVFAIL)
        return r.to_wire()


def _formerr(wire: bytes) -> bytes | None:
    """A FORMERR reply to a query whose header at least is readable (else None: drop it)."""
    if len(wire) < 12:
        return None
    qid, flags = struct.unpack("!HH", wire[:4])
    if flags & 0x8000:  # a response: never answer those
        return None
    return struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x7900) | dns.rcode.FORMERR, 0, 0, 0, 0)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver, tasks: set[asyncio.Task[None]]) -> None:
        self.resolver = resolver
        self.tasks = tasks
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(self.tasks) > 1000:  # a flood: drop rather than queue without bound
            return
        t = asyncio.get_running_loop().create_task(self._reply(data, addr))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _reply(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = await self.resolver.answer(data)
            if out is not None and self.transport is not None:
                self.transport.sendto(out, addr)
        except Exception:
            log.exception("DNS query from %s failed", addr)


class DnsServer:
    def __init__(self, resolver: Resolver, host: str, port: int) -> None:
        self.resolver = resolver
        self.host = host
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self.resolver, self._tasks), local_addr=(self.host, self.port))
        self._udp = transport
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port, reuse_address=True)
        log.info("DNS on %s:%d (udp, tcp)", self.host, self.port)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                async with asyncio.timeout(30):
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    data = await reader.readexactly(size)
                out = await self.resolver.answer(data, tcp=True)
                if out is None:
                    break
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("DNS over TCP failed")
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for t in list(self._tasks):
            t.cancel()
