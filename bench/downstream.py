"""Downstream benchmark: API write -> edge LMDB commit.

Starts a lab (cloud + one edge node, every module its own process) and measures

1. latency at a steady 100 updates/s: HTTP PUT to the apiserver -> metamanager's commit
   event on the node (p50/p99);
2. sustained updates/s through one node: concurrent API writers, until the node has
   committed the last version of every object;

and, in the same run against the same two servers, the baseline: raw nats-py publish on
the cloud server -> subscriber on the edge's leaf server (latency at 100 msg/s, and
throughput). Prints the figures and the ratios.

    .venv/bin/python bench/downstream.py [--updates 500] [--burst 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import ssl
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgebus import names  # noqa: E402
from edgebus.envelope import Envelope  # noqa: E402
from edgebus.lab import Lab, LabPlan  # noqa: E402
from edgebus.testing.labrun import free_base_port  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402

NODE = "edge-1"


class Http:
    """A cheap HTTP/1.1 client: one keep-alive connection per thread (stdlib), so the load
    generator does not eat the CPU the system under test needs on a 2-core machine."""

    def __init__(self, base: str, *, ca_file: str | None = None, token: str | None = None) -> None:
        u = urlparse(base)
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname or "127.0.0.1", u.port or (443 if self.https else 80)
        self.ctx = ssl.create_default_context(cafile=ca_file) if self.https else None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.local = threading.local()

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=10, context=self.ctx)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            self.local.conn = conn
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={**self.headers, **({"Content-Type": "application/json"} if data else {})})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt(ms: list[float]) -> str:
    return f"p50 {pct(ms, 50):6.2f} ms   p99 {pct(ms, 99):6.2f} ms   max {max(ms):6.2f} ms"


async def raw_baseline(plan: LabPlan, n: int, burst: int) -> tuple[list[float], float]:
    """nats-py publish in the cloud -> subscriber on the node's server, same credentials and
    TLS as the system's own traffic (a subject under the node's own namespace)."""
    pub = plan.cloud_bus("bench-raw-pub")
    sub = plan.node_bus(NODE, "bench-raw-sub")
    subject = f"{names.node_filter(NODE)[:-2]}.bench.raw"
    await pub.connect(retry_for=5)
    await sub.connect(retry_for=5)
    arrived: dict[int, float] = {}
    done = asyncio.Event()
    target = [n]

    async def on(m) -> None:  # type: ignore[no-untyped-def]
        i = int(m.data)
        arrived[i] = time.perf_counter()
        if len(arrived) >= target[0]:
            done.set()

    unsub = await sub.subscribe(subject, on)
    await sub.flush()
    await asyncio.sleep(0.5)  # interest propagates over the leaf
    sent: dict[int, float] = {}
    for i in range(n):
        sent[i] = time.perf_counter()
        await pub.publish(subject, str(i).encode())
        await asyncio.sleep(0.01)
    await asyncio.wait_for(done.wait(), 10)
    lat = [(arrived[i] - sent[i]) * 1000 for i in range(n)]
    # throughput
    arrived.clear()
    done.clear()
    target[0] = burst
    t0 = time.perf_counter()
    for i in range(burst):
        await pub.publish(subject, str(i).encode())
    await asyncio.wait_for(done.wait(), 30)
    tput = burst / (time.perf_counter() - t0)
    await unsub()
    await pub.close()
    await sub.close()
    return lat, tput


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--updates", type=int, default=500, help="updates in the 100/s latency run")
    ap.add_argument("--burst", type=int, default=3000, help="updates in the throughput run")
    ap.add_argument("--objects", type=int, default=50, help="ConfigMaps the updates spread over")
    ap.add_argument("--writers", type=int, default=16, help="concurrent API writers in the throughput run")
    ap.add_argument("--tls", choices=("both", "on", "off"), default="both", help="TLS on the cloud's ports and the API (both: run twice and compare)")
    args = ap.parse_args()

    results: dict[bool, dict[str, float]] = {}
    for tls in {"both": (False, True), "on": (True,), "off": (False,)}[args.tls]:
        tmp = Path(tempfile.mkdtemp(prefix="edgebus-bench-"))
        plan = LabPlan(data_dir=str(tmp / "lab"), nodes=[NODE], base_port=free_base_port(1), heartbeat=5, log_level="WARNING", tls=tls)
        lab = Lab(plan, die_with_supervisor=True)
        print(f"\n== TLS {'on' if tls else 'off'} (credentials on every connection either way): lab in {tmp} ...", flush=True)
        await lab.up()
        try:
            results[tls] = await run(plan, args)
        finally:
            await lab.down()
    if len(results) == 2:
        on, off = results[True], results[False]
        print("\nTLS on / TLS off (same machine, same run)")
        print(f"  latency p50 {on['p50'] / off['p50']:5.2f}x   p99 {on['p99'] / off['p99']:5.2f}x   throughput {on['tput'] / off['tput']:5.2f}x")
    last = results.get(True) or results[False]
    tls_ratio = f" tls_tput_ratio={results[True]['tput'] / results[False]['tput']:.3f}" if len(results) == 2 else ""
    print(f"RESULT p50_ms={last['p50']:.2f} p99_ms={last['p99']:.2f} updates_per_s={last['tput']:.0f}{tls_ratio}")


async def run(plan: LabPlan, args: argparse.Namespace) -> dict[str, float]:
    api = Http(plan.apiserver_url, ca_file=plan.tls_ca_file, token=plan.admin_token())
    edge = plan.node_bus(NODE, "bench-edge")
    await edge.connect(retry_for=10)
    committed: dict[tuple[str, str], float] = {}
    events = asyncio.Event()

    async def on_commit(m) -> None:  # type: ignore[no-untyped-def]
        c = Envelope.decode(m.data).content
        obj = c.get("object") or {}
        ver = (obj.get("data") or {}).get("ver")
        if ver is not None:
            committed[(c["name"], ver)] = time.perf_counter()
            events.set()

    await edge.subscribe(names.meta_events_subject(NODE, "configmaps"), on_commit)
    await edge.flush()

    ns = "/api/v1/namespaces/default"
    cms = [f"bench-{i:03d}" for i in range(args.objects)]
    rvs: dict[str, str] = {}
    for name in cms:
        code, body = api.request("POST", f"{ns}/configmaps", {"metadata": {"name": name}, "data": {"ver": "0"}})
        assert code == 201, body
        rvs[name] = body["metadata"]["resourceVersion"]
    pod = {
        "metadata": {"name": "bench-holder"},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}], "volumes": [{"name": f"v{i}", "configMap": {"name": n}} for i, n in enumerate(cms)]},
    }
    code, body = api.request("POST", f"{ns}/pods", pod)
    assert code == 201, body
    await eventually(lambda: all((n, "0") in committed for n in cms), timeout=30, msg="initial sync")

    def put(name: str, ver: str) -> None:
        for _ in range(10):
            code, body = api.request("PUT", f"{ns}/configmaps/{name}", {"metadata": {"name": name, "resourceVersion": rvs[name]}, "data": {"ver": ver}})
            if code == 409:
                rvs[name] = api.request("GET", f"{ns}/configmaps/{name}")[1]["metadata"]["resourceVersion"]
                continue
            assert code == 200, body
            rvs[name] = body["metadata"]["resourceVersion"]
            return
        raise RuntimeError(f"could not update {name}")

    # -- 1. latency at 100 updates/s ----------------------------------------------------
    print(f"latency run: {args.updates} updates at 100/s over {args.objects} ConfigMaps ...", flush=True)
    sent: dict[tuple[str, str], float] = {}
    interval = 0.01
    t_next = time.perf_counter()
    for i in range(args.updates):
        name, ver = cms[i % len(cms)], f"L{i}"
        sent[(name, ver)] = time.perf_counter()
        await asyncio.to_thread(put, name, ver)
        t_next += interval
        await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
    await eventually(lambda: all(k in committed for k in sent), timeout=30, msg="latency run committed")
    lat = [(committed[k] - sent[k]) * 1000 for k in sent]
    api_only = []
    for _ in range(50):
        t0 = time.perf_counter()
        await asyncio.to_thread(api.request, "GET", f"{ns}/configmaps/{cms[0]}")
        api_only.append((time.perf_counter() - t0) * 1000)

    # -- 2. sustained throughput -------------------------------------------------------------
    print(f"throughput run: {args.burst} updates from {args.writers} concurrent writers ...", flush=True)
    per_writer = [cms[w :: args.writers] for w in range(args.writers)]
    counts = [0] * args.writers
    last_ver: dict[str, str] = {}

    def writer(w: int) -> None:
        mine = per_writer[w]
        k = 0
        while sum(counts) < args.burst and mine:
            name = mine[k % len(mine)]
            ver = f"T{w}-{k}"
            put(name, ver)
            last_ver[name] = ver
            counts[w] += 1
            k += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.writers) as pool:
        await asyncio.gather(*(asyncio.wrap_future(pool.submit(writer, w)) for w in range(args.writers)))
    t_api = time.perf_counter() - t0
    await eventually(lambda: all((n, v) in committed for n, v in last_ver.items()), timeout=60, interval=0.005, msg="throughput run committed")
    t_edge = max(committed[(n, v)] for n, v in last_ver.items()) - t0
    total = sum(counts)

    raw_lat, raw_tput = await raw_baseline(plan, args.updates, args.burst * 10)
    await edge.close()

    print()
    print("edgebus downstream: API write -> edge LMDB commit (cloud + 1 edge node, separate processes)")
    print(f"  at 100 updates/s      {fmt(lat)}   (n={len(lat)})")
    print(f"  apiserver GET alone   {fmt(api_only)}")
    print(f"  sustained             {total / t_edge:8.0f} updates/s committed on the edge ({total} updates, API accepted them at {total / t_api:.0f}/s)")
    print("baseline: raw nats-py publish (cloud server) -> subscriber (edge leaf server), same run")
    print(f"  at 100 msg/s          {fmt(raw_lat)}")
    print(f"  throughput            {raw_tput:8.0f} msg/s")
    print("ratios (edgebus / raw)")
    print(f"  latency p50 {pct(lat, 50) / pct(raw_lat, 50):6.1f}x   p99 {pct(lat, 99) / pct(raw_lat, 99):6.1f}x   throughput {total / t_edge / raw_tput:6.4f}x")
    ok = pct(lat, 50) <= 20 and pct(lat, 99) <= 100 and total / t_edge >= 1000
    print(f"targets (p50 <= 20 ms, p99 <= 100 ms at 100/s, >= 1000 updates/s): {'met' if ok else 'NOT met'}")
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "tput": total / t_edge}


if __name__ == "__main__":
    asyncio.run(main())
