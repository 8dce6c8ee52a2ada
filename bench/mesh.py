"""Mesh benchmark: requests/s and latency through edgemesh, against direct TCP in the same run.

Starts a lab (cloud + two edge nodes, every module its own process; no devices, no
containerd) and two HTTP backends as separate processes standing for host-network pods,
one on each node (their Pods' status goes through the node's outbox as edged's does).
Service ``local`` selects the pod on edge-1, service ``remote`` the pod on edge-2; the
client runs on edge-1 (this process) and measures, for direct / local / cross-node:

1. latency of sequential requests on one keep-alive connection (p50/p99), sampled in
   interleaved rounds so background load hits every path alike;
2. latency with a new connection per request (p50/p99: the proxy's accept, the backend
   connect, and for cross-node the tunnel's open request);
3. requests/s with concurrent keep-alive connections;
4. bulk throughput: one large download (MB/s), direct vs through the tunnel.

Prints the figures and the overhead ratios (mesh / direct). Targets: local p99 <= 2x
direct; tunnel throughput >= 50 MB/s.

    .venv/bin/python bench/mesh.py [--requests 5000] [--seconds 3] [--concurrency 8] [--mb 200]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.asyncquery  # noqa: E402
import dns.message  # noqa: E402

from edgebus import names  # noqa: E402
from edgebus.envelope import Envelope  # noqa: E402
from edgebus.lab import Lab, LabPlan  # noqa: E402
from edgebus.objects import SERVICES  # noqa: E402
from edgebus.objectstore import ObjectStore  # noqa: E402
from edgebus.testing.backends import host_pod  # noqa: E402
from edgebus.testing.labrun import free_base_port  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402

NODES = ["edge-1", "edge-2"]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Client:
    """A minimal keep-alive HTTP/1.1 client on raw streams (cheap, so the load generator
    leaves the 2 cores to what is measured)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.r, self.w = await asyncio.open_connection(self.host, self.port)

    async def get(self, path: str = "/") -> bytes:
        assert self.r is not None and self.w is not None
        self.w.write(f"GET {path} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        head = await self.r.readuntil(b"\r\n\r\n")
        i = head.index(b"Content-Length: ") + 16
        n = int(head[i : head.index(b"\r\n", i)])
        return await self.r.readexactly(n)

    def close(self) -> None:
        if self.w is not None:
            self.w.close()


async def latency_keepalive(host: str, port: int, n: int) -> list[float]:
    c = Client(host, port)
    await c.connect()
    for _ in range(20):  # warm up
        await c.get()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await c.get()
        out.append((time.perf_counter() - t) * 1000)
    c.close()
    return out


async def latency_new_conn(host: str, port: int, n: int) -> list[float]:
    out = []
    for i in range(n + 5):
        t = time.perf_counter()
        c = Client(host, port)
        await c.connect()
        await c.get()
        c.close()
        if i >= 5:
            out.append((time.perf_counter() - t) * 1000)
    return out


async def throughput(host: str, port: int, seconds: float, conc: int) -> float:
    stop = time.perf_counter() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        c = Client(host, port)
        await c.connect()
        while time.perf_counter() < stop:
            await c.get()
            count += 1
        c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return count / (time.perf_counter() - t0)


async def bulk(host: str, port: int, size: int) -> float:
    r, w = await asyncio.open_connection(host, port, limit=1 << 22)
    w.write(f"GET /blob?size={size}&seed=3 HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    await r.readuntil(b"\r\n\r\n")
    t0 = time.perf_counter()
    left = size
    while left:
        chunk = await r.read(min(left, 1 << 22))
        if not chunk:
            raise RuntimeError("stream ended early")
        left -= len(chunk)
    dt = time.perf_counter() - t0
    w.close()
    return size / dt / 1e6


def start_backend(name: str) -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen([sys.executable, "-m", "edgebus.testing.backends", name], stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[1]))
    assert p.stdout is not None
    return p, int(p.stdout.readline())


async def resolve(server: tuple[str, int], name: str) -> str:
    r = await dns.asyncquery.udp(dns.message.make_query(name, "A"), server[0], port=server[1], timeout=3)
    return str(r.answer[0][0].address)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--conn-requests", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--mb", type=int, default=200)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="edgebus-bench-mesh-")
    plan = LabPlan(data_dir=tmp, nodes=NODES, base_port=free_base_port(len(NODES)), devices=False, containerd=False, log_level="WARNING")
    lab = Lab(plan, die_with_supervisor=True)
    procs: list[subprocess.Popen[str]] = []
    print(f"starting lab in {tmp} (cloud + {len(NODES)} nodes, each module its own process)...", flush=True)
    await lab.up()
    cloud = plan.cloud_bus("bench-cloud")
    await cloud.connect(retry_for=10)
    edges = {}
    for n in NODES:
        edges[n] = plan.node_bus(n, f"bench-{n}")
        await edges[n].connect(retry_for=10)
    try:
        store = ObjectStore(cloud)
        p1, port1 = start_backend("web-1")
        p2, port2 = start_backend("web-2")
        procs += [p1, p2]
        for name, app in (("local", "web-1"), ("remote", "web-2")):
            await store.create(SERVICES, {"metadata": {"name": name, "namespace": "default"}, "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]}})
        await host_pod(store, edges["edge-1"], "edge-1", "web-1", port1, app="web-1")
        await host_pod(store, edges["edge-2"], "edge-2", "web-2", port2, app="web-2")

        async def ready(svc: str) -> bool:
            env = Envelope.new(source="bench", operation="query", content={})
            st = (await edges["edge-1"].call(names.mesh_subject("edge-1", "state"), env)).content
            return any(s["name"] == svc and any(e["ready"] for p in s["ports"] for e in p["endpoints"]) for s in st["services"])

        await eventually(lambda: ready("local"), timeout=30, msg="local ready")
        await eventually(lambda: ready("remote"), timeout=30, msg="remote ready")
        dns_server = plan.mesh_dns("edge-1")
        local = await resolve(dns_server, "local.default.svc.cluster.local")
        remote = await resolve(dns_server, "remote.default.svc.cluster.local")
        targets = {"direct": ("127.0.0.1", port1), "local": (local, 8080), "cross-node": (remote, 8080)}
        print(f"edge-1 DNS {dns_server[0]}:{dns_server[1]}: local -> {local}, remote -> {remote}; backends on 127.0.0.1:{port1} (edge-1), :{port2} (edge-2)\n")

        # Latency samples are taken in interleaved rounds (direct, local, cross-node, again),
        # so the background work of the lab's other processes falls on every path alike.
        ka: dict[str, list[float]] = {k: [] for k in targets}
        nc: dict[str, list[float]] = {k: [] for k in targets}
        rounds = 10
        for _ in range(rounds):
            for label, (h, p) in targets.items():
                ka[label] += await latency_keepalive(h, p, args.requests // rounds)
                nc[label] += await latency_new_conn(h, p, args.conn_requests // rounds)
        res: dict[str, dict[str, float]] = {}
        for label, (h, p) in targets.items():
            rps = await throughput(h, p, args.seconds, args.concurrency)
            res[label] = {"p50": pct(ka[label], 50), "p99": pct(ka[label], 99), "c50": pct(nc[label], 50), "c99": pct(nc[label], 99), "rps": rps}
        size = args.mb * 1024 * 1024
        res["direct"]["mbs"] = await bulk("127.0.0.1", port2, size)
        res["local"]["mbs"] = await bulk(local, 8080, size)
        res["cross-node"]["mbs"] = await bulk(remote, 8080, size)

        print(f"{'path':<11} {'keep-alive p50':>15} {'p99':>9} {'new conn p50':>13} {'p99':>9} {'req/s (x' + str(args.concurrency) + ')':>12} {'bulk MB/s':>10}")
        for label, r in res.items():
            print(f"{label:<11} {r['p50']:>12.3f} ms {r['p99']:>6.3f} ms {r['c50']:>10.3f} ms {r['c99']:>6.3f} ms {r['rps']:>12.0f} {r['mbs']:>10.1f}")
        d = res["direct"]
        print()
        for label in ("local", "cross-node"):
            r = res[label]
            print(
                f"{label:<11} overhead vs direct: keep-alive p99 x{r['p99'] / d['p99']:.2f} (p50 x{r['p50'] / d['p50']:.2f}), "
                f"new-conn p99 x{r['c99'] / d['c99']:.2f}, req/s x{r['rps'] / d['rps']:.2f}, bulk x{r['mbs'] / d['mbs']:.2f}"
            )
        ok_local = res["local"]["p99"] <= 2 * d["p99"]
        ok_tunnel = res["cross-node"]["mbs"] >= 50
        print(f"\ntargets: local p99 <= 2x direct: {'met' if ok_local else 'MISSED'}; tunnel >= 50 MB/s: {'met' if ok_tunnel else 'MISSED'} ({res['cross-node']['mbs']:.1f} MB/s)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)
        await cloud.close()
        for b in edges.values():
            await b.close()
        await lab.down()


if __name__ == "__main__":
    asyncio.run(main())
