"""Two edge nodes and the cloud, in one process against real servers, for the mesh tests
and ``bench/mesh.py``: a hub and two leaves;
cloudhub, edgecontroller, endpointcontroller (cloud); metamanager, edgehub, edgemesh on
each node. Backends are host processes' sockets (HTTP servers in this process) standing
for host-network pods: their Pod objects are bound to a node and their status reaches the
cloud the way edged's does (the node's outbox, forwarded by edgehub, applied by cloudhub),
so Endpoints come out of the real pipeline and travel down to both nodes."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message

from edgebus import names
from edgebus.bus import Bus
from edgebus.envelope import Envelope
from edgebus.natsd import free_port
from edgebus.objects import PODS, SERVICES
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service
from edgebus.testing.backends import HttpBackend, UpstreamDns, host_pod, report_pod
from edgebus.testing.servers import Cluster, Leaf, cloudhub_identity, register_node, start_hub, start_leaf, start_site
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually

NODES = ("edge-1", "edge-2")


def cidrs() -> dict[str, str]:
    """A loopback /24 per node for its Service addresses, random per run: test runs that
    share the machine must not share listeners (edgemesh binds ``<address>:<port>``)."""
    a, b = random.randrange(64, 250), random.randrange(0, 256 - len(NODES))
    return {node: f"127.{a}.{b + i}.0/24" for i, node in enumerate(NODES)}


@dataclass
class MeshNet:
    cluster: Cluster
    store: ObjectStore
    cloud: Bus
    edges: dict[str, Bus]
    services: dict[str, Service[Any]]
    dns_ports: dict[str, int]
    upstream: UpstreamDns
    cidrs: dict[str, str]
    backends: list[HttpBackend] = field(default_factory=list)

    # -- objects ----------------------------------------------------------------------------
    async def add_backend(self, name: str, node: str, *, app: str = "web", ready: bool = True) -> HttpBackend:
        """A backend socket plus its Pod (bound to ``node``), reported Running by the node."""
        b = await HttpBackend(name).start()
        self.backends.append(b)
        await host_pod(self.store, self.edges[node], node, name, b.port, app=app, ready=ready)
        return b

    async def set_ready(self, pod: str, ready: bool) -> None:
        """The pod's node reports it (Not)Ready, as edged would."""
        p = await self.store.get(PODS, "default", pod)
        node = p["spec"]["nodeName"]
        await report_pod(self.edges[node], node, "default", pod, p["metadata"]["uid"], ready)

    async def add_service(self, name: str = "web", *, app: str = "web", port: int = 8080, policy: str | None = None) -> dict[str, Any]:
        md: dict[str, Any] = {"name": name, "namespace": "default"}
        if policy:
            md["annotations"] = {"edgebus.io/lb-policy": policy}
        return await self.store.create(SERVICES, {"metadata": md, "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port, "targetPort": "http"}]}})

    # -- the edge's view ----------------------------------------------------------------------
    async def mesh_state(self, node: str) -> dict[str, Any]:
        env = Envelope.new(source="test", operation="query", content={})
        return dict((await self.edges[node].call(names.mesh_subject(node, "state"), env)).content)

    async def ready_endpoints(self, node: str, service: str = "web") -> set[tuple[str, int, str]]:
        st = await self.mesh_state(node)
        out = set()
        for s in st["services"]:
            if s["name"] == service:
                for p in s["ports"]:
                    out |= {(e["ip"], e["port"], e["node"]) for e in p["endpoints"] if e["ready"]}
        return out

    async def wait_endpoints(self, count: int, service: str = "web", nodes: tuple[str, ...] = NODES, timeout: float = 20) -> None:
        async def ok() -> bool:
            for n in nodes:
                if len(await self.ready_endpoints(n, service)) != count:
                    return False
            return True

        await eventually(ok, timeout=timeout, interval=0.1, msg=f"{count} ready endpoints of {service} on {nodes}")

    async def address(self, node: str, service: str = "web", namespace: str = "default") -> str:
        return await resolve(self.dns_ports[node], f"{service}.{namespace}.svc.cluster.local")

    async def close(self) -> None:
        for b in self.backends:
            await b.stop()
        await self.cloud.close()
        for bus in self.edges.values():
            await bus.close()
        for s in reversed(list(self.services.values())):
            await s.stop()
        await self.upstream.stop()
        self.cluster.stop()


async def query(port: int, name: str, rdtype: str = "A", *, tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=3)
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=3)


async def resolve(port: int, name: str) -> str:
    r = await query(port, name)
    for rrset in r.answer:
        for rd in rrset:
            return str(rd.address)
    raise LookupError(f"{name}: no A record (rcode {r.rcode()})")


SITE = "site-a"


async def start_meshnet(tmp_path: Path, *, mesh_settings: dict[str, Any] | None = None, cut_proxy: bool = True, site: bool = False) -> MeshNet:
    """With ``site``, the nodes' leaf servers dial a site server (itself a leaf of the hub,
    through a cuttable proxy) instead of the hub: edge federation."""
    hub = start_hub(tmp_path)
    cluster = Cluster(tmp_path, hub)
    site_port = None
    if site:
        site_port = free_port()
        cluster.leaves[SITE] = start_site(tmp_path, hub, SITE, list(NODES), leaf_port=site_port)
    upstream = await UpstreamDns({"example.org": "127.0.0.99"}).start()
    services: dict[str, Service[Any]] = {}
    try:
        services["cloudhub"] = build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub=cloudhub_identity(hub, node_grace_period=30))
        services["edgecontroller"] = build_service("edgecontroller", nats=hub.nats_settings("edgecontroller"))
        services["endpointcontroller"] = build_service("endpointcontroller", nats=hub.nats_settings("endpointcontroller"))
        dns_ports: dict[str, int] = {}
        ranges = cidrs()
        for node in NODES:
            leaf = start_leaf(tmp_path, hub, node, via_proxy=cut_proxy and not site, upstream_leaf_port=site_port)
            cluster.leaves[node] = leaf
            def base(user: str, leaf: Leaf = leaf, node: str = node) -> dict[str, Any]:
                return {"node": node, "nats": {**leaf.nats_settings(user), "ping_interval": 1}}

            dns_ports[node] = free_port()
            services[f"{node}/metamanager"] = build_service(
                "metamanager", **base("metamanager"), metamanager={"data_dir": str(tmp_path / node / "mm"), "metaserver_port": free_port()}
            )
            services[f"{node}/edgehub"] = build_service("edgehub", **base("edgehub"), edgehub={"heartbeat_interval": 0.5})
            services[f"{node}/edgemesh"] = build_service(
                "edgemesh",
                **base("edgemesh"),
                edgemesh={
                    "dns_port": dns_ports[node],
                    "upstream": f"127.0.0.1:{upstream.port}",
                    "service_cidr": ranges[node],
                    "keepalive": 1.0,
                    "idle_timeout": 4.0,
                    "connect_timeout": 2.0,
                    **(mesh_settings or {}),
                },
            )
        cloud = hub.bus("test-cloud")
        await cloud.connect(retry_for=10)
        edges = {}
        for node in NODES:
            edges[node] = cluster.leaves[node].bus(f"test-{node}")
            await edges[node].connect(retry_for=10)
        store = ObjectStore(cloud)
        await store.ensure()
        await store.ensure_system_namespaces()
        for node in NODES:
            await register_node(store, node)
        for s in services.values():
            await s.start()
        net = MeshNet(cluster, store, cloud, edges, services, dns_ports, upstream, ranges)

        async def joined() -> bool:
            from edgebus.objects import NODES as NODE_RES

            items, _ = await store.list(NODE_RES)
            return {i["metadata"]["name"] for i in items} >= set(NODES)

        await eventually(joined, timeout=20, msg="both nodes joined")
        return net
    except BaseException:
        for s in services.values():
            await s.stop()
        await upstream.stop()
        cluster.stop()
        raise


async def http_get(host: str, port: int, path: str = "/", *, timeout: float = 5) -> bytes:
    """One HTTP/1.1 request on a new connection (Connection: close)."""
    async with asyncio.timeout(timeout):
        r, w = await asyncio.open_connection(host, port)
        try:
            w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            length = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
            return await r.readexactly(length)
        finally:
            w.close()
