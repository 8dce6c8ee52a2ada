"""edgemesh on two nodes with the real pipeline: Services and pod status in the cloud ->
endpointcontroller -> Endpoints -> edgecontroller -> both nodes' metamanager -> edgemesh.
Real sockets throughout: DNS over UDP and TCP, HTTP through the proxy, NATS tunnels."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import dns.rcode
import pytest

from edgebus import names
from edgebus.bus import Bus
from edgebus.envelope import Envelope
from edgebus.testing.backends import blob
from edgebus.testing.waiting import eventually

from .meshnet import MeshNet, http_get, query, resolve, start_meshnet


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[MeshNet]:
    n = await start_meshnet(tmp_path)
    try:
        yield n
    finally:
        await n.close()


async def test_dns_answers_cluster_names_nxdomain_and_forwards_the_rest(net: MeshNet) -> None:
    await net.add_service("web")
    await eventually(lambda: net.address("edge-1"), timeout=20, msg="web resolvable on edge-1")
    port1, port2 = net.dns_ports["edge-1"], net.dns_ports["edge-2"]
    a1 = await resolve(port1, "web.default.svc.cluster.local")
    assert ipaddress.ip_address(a1) in ipaddress.ip_network(net.cidrs["edge-1"])
    assert await resolve(port1, "web.default") == a1
    assert await resolve(port1, "web") == a1
    r = await query(port1, "web.default.svc.cluster.local", tcp=True)
    assert str(r.answer[0][0].address) == a1
    a2 = await eventually(lambda: resolve(port2, "web.default.svc.cluster.local"), timeout=10)
    assert ipaddress.ip_address(a2) in ipaddress.ip_network(net.cidrs["edge-2"])  # each node's own range
    assert (await query(port1, "nope.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    assert (await query(port1, "web.other.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
    # not ours: forwarded to the upstream resolver (and its answers come back, NXDOMAIN included)
    assert await resolve(port1, "example.org") == "127.0.0.99"
    assert (await query(port1, "example.org", tcp=True)).answer[0][0].address == "127.0.0.99"
    assert (await query(port1, "missing.example.org")).rcode() == dns.rcode.NXDOMAIN
    assert net.upstream.queries.count("example.org") == 2 and "web.default.svc.cluster.local" not in net.upstream.queries
    # garbage never kills the server
    loop = asyncio.get_running_loop()
    tr, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port1))
    for junk in (b"", b"\x00", b"\xff" * 40, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\xff"):
        tr.sendto(junk)
    tr.close()
    r_, w_ = await asyncio.open_connection("127.0.0.1", port1)
    w_.write(b"\x00\x05junk!")
    w_.close()
    assert await resolve(port1, "web") == a1
    # a deleted Service stops resolving
    from edgebus.objects import SERVICES

    await net.store.delete(SERVICES, "default", "web")

    async def gone() -> bool:
        return (await query(port1, "web.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN

    await eventually(gone, timeout=15, msg="web gone on edge-1")


async def test_http_through_the_mesh_balances_local_and_remote_and_skips_not_ready(net: MeshNet) -> None:
    await net.add_service("web")
    await net.add_service("rnd", app="web", port=8081, policy="random")
    b1 = await net.add_backend("web-1", "edge-1")
    b2 = await net.add_backend("web-2", "edge-2")
    await net.wait_endpoints(2)
    await net.wait_endpoints(2, "rnd")
    for node in ("edge-1", "edge-2"):
        addr = await net.address(node)
        seen = Counter([(await http_get(addr, 8080)).decode() for _ in range(100)])
        assert seen == {"web-1": 50, "web-2": 50}, (node, seen)  # round-robin: exactly alternating
    rnd = await resolve(net.dns_ports["edge-1"], "rnd.default")
    seen = Counter([(await http_get(rnd, 8081)).decode() for _ in range(100)])
    assert set(seen) == {"web-1", "web-2"} and min(seen.values()) >= 20, seen
    async def tunnels_closed() -> bool:  # (the last one's FIN exchange may still be under way)
        return [(await net.mesh_state(n))["tunnels"] for n in ("edge-1", "edge-2")] == [0, 0]

    await eventually(tunnels_closed, timeout=5, msg="tunnels closed after their connections ended")
    served = b1.requests, b2.requests
    assert min(served) >= 120

    # web-2 (on edge-2) goes NotReady: edge-1 stops sending it traffic
    await net.set_ready("web-2", False)
    await net.wait_endpoints(1)
    addr = await net.address("edge-1")
    seen = Counter([(await http_get(addr, 8080)).decode() for _ in range(30)])
    assert seen == {"web-1": 30}
    # and web-1 NotReady while web-2 is back: all to the remote one
    await net.set_ready("web-2", True)
    await net.set_ready("web-1", False)

    async def only_web2() -> bool:
        eps = await net.ready_endpoints("edge-1")
        return len(eps) == 1 and next(iter(eps))[2] == "edge-2"

    await eventually(only_web2, timeout=20, msg="only web-2 ready on edge-1")
    seen = Counter([(await http_get(addr, 8080)).decode() for _ in range(30)])
    assert seen == {"web-2": 30}
    # no ready endpoint at all: the connection is refused (reset), the proxy lives on
    await net.set_ready("web-2", False)
    await net.wait_endpoints(0)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await http_get(addr, 8080)
    await net.set_ready("web-1", True)
    await net.wait_endpoints(1)
    assert await http_get(addr, 8080) == b"web-1"


async def _transfer(addr: str, port: int, size: int) -> tuple[str, str]:
    """Download ``size`` bytes and upload ``size`` bytes on one connection; return their hashes."""
    r, w = await asyncio.open_connection(addr, port)
    try:
        w.write(f"GET /blob?size={size}&seed=7 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        assert b"Content-Length: %d" % size in head
        down = hashlib.sha256(await r.readexactly(size)).hexdigest()
        data = blob(size, 8)
        w.write(f"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        w.write(data)
        await w.drain()
        await r.readuntil(b"\r\n\r\n")
        up = (await r.readexactly(64)).decode()
        return down, up
    finally:
        w.close()


async def test_ten_megabytes_cross_the_tunnel_intact_both_ways_with_back_pressure(net: MeshNet) -> None:
    await net.add_service("blob", app="blob")
    await net.add_backend("blob-2", "edge-2", app="blob")
    await net.wait_endpoints(1, "blob")
    addr = await net.address("edge-1", "blob")
    size = 10 * 1024 * 1024
    t0 = time.perf_counter()
    down, up = await _transfer(addr, 8080, size)
    assert down == hashlib.sha256(blob(size, 7)).hexdigest()
    assert up == hashlib.sha256(blob(size, 8)).hexdigest()
    assert time.perf_counter() - t0 < 30

    # a fast sender, a reader that stops: the sender is held back by the window, end to end
    server = net.services["edge-2/edgemesh"].ctx
    client = net.services["edge-1/edgemesh"].ctx
    big = 200 * 1024 * 1024
    r, w = await asyncio.open_connection(addr, 8080)
    w.write(f"GET /blob?size={big}&seed=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await w.drain()
    await r.readuntil(b"\r\n\r\n")
    await asyncio.sleep(2.0)  # read nothing meanwhile
    [st] = list(server.tunnels.tunnels.values())
    [ct] = list(client.tunnels.tunnels.values())
    window = server.tunnels.window
    assert st.tx - st.acked <= window
    assert st.tx < 24 * 1024 * 1024, f"sent {st.tx} bytes to a reader that reads nothing"
    assert ct.rx - ct.rx_acked <= window + ct.chunk
    assert len(st.buf) <= 2 * st.chunk + 256 * 1024
    stalled_at = st.tx
    await asyncio.sleep(0.5)
    assert st.tx == stalled_at, "no progress while the reader reads nothing"
    # reading resumes: the stream continues, intact
    got = hashlib.sha256()
    left = 32 * 1024 * 1024
    while left:
        chunk = await r.read(min(left, 1 << 20))
        assert chunk
        got.update(chunk)
        left -= len(chunk)
    assert got.hexdigest() == hashlib.sha256(blob(big, 1)[: 32 * 1024 * 1024]).hexdigest()
    # the client goes away mid-stream: both ends of the tunnel are torn down
    w.close()
    await eventually(lambda: not server.tunnels.tunnels and not client.tunnels.tunnels, timeout=10, msg="tunnels torn down")


async def test_bad_tunnel_input_and_a_peer_that_disappears(net: MeshNet) -> None:
    await net.add_service("blob", app="blob")
    await net.add_backend("blob-2", "edge-2", app="blob")
    await net.wait_endpoints(1, "blob")
    addr = await net.address("edge-1", "blob")
    rogue: Bus = net.edges["edge-1"]
    # garbage on tunnel subjects, forged frames for unknown tunnels, bad open requests (sent
    # as edge-1: the only sender edge-1's credential may claim to be)
    for subj in (names.mesh_tunnel_subject("edge-2", "edge-1", "deadbeef"), names.mesh_tunnel_subject("edge-1", "edge-1", "x")):
        for junk in (b"", b"D", b"Q" + b"\0" * 12, b"D" + b"\0" * 8 + b"data", b"\xff" * 100):
            await rogue.publish(subj, junk)
    for i, content in enumerate(({}, {"tunnel": "t1", "ip": "127.0.0.1", "port": "1"}, {"tunnel": "t2", "ip": "127.0.0.1", "port": 22})):
        env = Envelope.new(source="test", operation="query", content=content)
        answer = await rogue.request(names.mesh_open_subject("edge-2", "edge-1"), env, timeout=5, reply=names.mesh_reply_subject("edge-1", "edge-2", f"rogue{i}"))
        assert Envelope.decode(answer.data).route.operation == "error"  # bad request, or not an endpoint of edge-2: no open relay
    await rogue.publish(names.mesh_open_subject("edge-2", "edge-1"), b"\x00not msgpack", reply=names.mesh_reply_subject("edge-1", "edge-2", "rogue9"))
    assert await http_get(addr, 8080) == b"blob-2"

    client = net.services["edge-1/edgemesh"].ctx

    async def stream() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        r, w = await asyncio.open_connection(addr, 8080)
        w.write(b"GET /blob?size=104857600&seed=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        await w.drain()
        await r.readuntil(b"\r\n\r\n")
        await r.readexactly(1024 * 1024)
        assert len(client.tunnels.tunnels) == 1
        return r, w

    async def reset_within(r: asyncio.StreamReader, seconds: float) -> None:
        t0 = time.perf_counter()
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            async with asyncio.timeout(15):
                while await r.read(1 << 20):
                    pass
                raise AssertionError("an orderly end is wrong too: the stream was cut")
        assert time.perf_counter() - t0 < seconds
        await eventually(lambda: not client.tunnels.tunnels, timeout=5, msg="client tunnel gone")

    # the path to the peer dies silently mid-stream (edge-2 cut off): keepalives stop
    # arriving and the tunnel is reset after idle_timeout (4 s here), not hung forever
    r, w = await stream()
    px = net.cluster.leaves["edge-2"].proxy
    assert px is not None
    px.freeze()
    await reset_within(r, 9)
    w.close()
    px.heal()
    await eventually(lambda: http_get(addr, 8080), timeout=30, msg="edge-2 reachable again")

    # the peer's edgemesh stops mid-stream: it resets its tunnels, the client's connection too
    r, w = await stream()
    w.write(b"GET /blob?size=104857600&seed=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    await w.drain()
    await net.services["edge-2/edgemesh"].stop()
    await reset_within(r, 2)
    w.close()


async def test_offline_local_traffic_and_dns_keep_working(net: MeshNet) -> None:
    await net.add_service("web")
    await net.add_backend("web-1", "edge-1")
    await net.add_backend("web-2", "edge-2")
    await net.wait_endpoints(2)
    addr = await net.address("edge-1")
    proxy = net.cluster.leaves["edge-1"].proxy
    assert proxy is not None
    proxy.cut()  # edge-1 loses the cloud, and with it edge-2

    async def link_down() -> bool:
        env = Envelope.new(source="test", operation="query", content={})
        st = await net.edges["edge-1"].call(names.edgehub_subject("edge-1", "state"), env)
        return st.content.get("link") == "down"

    # (the leaf notices a reset link at once; a silent one after ~4 s of missed pings)

    await eventually(link_down, timeout=15, msg="edge-1 offline")
    assert await resolve(net.dns_ports["edge-1"], "web.default.svc.cluster.local") == addr
    # every connection is served: the remote pick fails at once (no route to edge-2) and
    # the local endpoint takes it
    seen = Counter([(await http_get(addr, 8080)).decode() for _ in range(20)])
    assert seen == {"web-1": 20}
    # the local pod's readiness is the node's own business, offline too
    await net.set_ready("web-1", False)

    async def none_ready() -> bool:
        return all(not e[2] == "edge-1" for e in await net.ready_endpoints("edge-1"))

    await eventually(none_ready, timeout=10, msg="web-1 NotReady on edge-1 while offline")
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await http_get(addr, 8080)
    proxy.heal()
    await net.set_ready("web-1", True)
    await net.wait_endpoints(2, nodes=("edge-1",), timeout=30)

    async def remote_back() -> bool:
        return (await http_get(addr, 8080)) == b"web-2"

    await eventually(remote_back, timeout=30, msg="edge-2 reachable through the tunnel again")
    seen = Counter([(await http_get(addr, 8080)).decode() for _ in range(20)])
    assert seen == {"web-1": 10, "web-2": 10}


async def test_edge_federation_a_site_keeps_talking_without_the_cloud(tmp_path: Path) -> None:
    """Both nodes' leaf servers dial a site server, which alone dials the cloud: with the
    site's uplink cut, edge-1 still reaches edge-2's pod through the tunnel (via the site)."""
    net = await start_meshnet(tmp_path, site=True)
    try:
        await net.add_service("web")
        await net.add_backend("web-2", "edge-2")
        await net.wait_endpoints(1, timeout=30)
        addr = await net.address("edge-1")
        assert await http_get(addr, 8080) == b"web-2"
        uplink = net.cluster.leaves["site-a"].proxy
        assert uplink is not None
        uplink.cut()

        async def site_offline() -> bool:
            env = Envelope.new(source="test", operation="query", content={})
            st = await net.edges["edge-1"].call(names.edgehub_subject("edge-1", "state"), env)
            return st.content.get("link") == "down"

        await eventually(site_offline, timeout=20, msg="edge-1 sees the cloud gone")
        seen = Counter([(await http_get(addr, 8080)).decode() for _ in range(20)])
        assert seen == {"web-2": 20}  # cross-node, cloud-less
        size = 10 * 1024 * 1024
        down, up = await _transfer(addr, 8080, size)
        assert down == hashlib.sha256(blob(size, 7)).hexdigest() and up == hashlib.sha256(blob(size, 8)).hexdigest()
        assert await resolve(net.dns_ports["edge-2"], "web.default") != addr  # edge-2's own range
    finally:
        await net.close()
