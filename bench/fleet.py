"""Fleet scale: N hollow edge nodes (plus the lab's real node) on one small cloud.

Starts a lab (the cloud, every service its own process, and one real edge node ``edge-1``
without containerd or devices), then N hollow nodes in this process
(:mod:`edgebus.testing.hollow`: real joins, real per-node credentials and leafnode
connections, pulls from the durable downstream consumer cloudhub made at join, edgehub's
forwarding protocol; a hollow runtime). Measures, in order:

1. join: N joins through cloudhub's join subject;
2. ready_s: from connecting all N at once to all N Ready (a watch of the Node objects);
3. steady state (``--steady`` s): cloud CPU (cores) and RSS per service and nats-server;
   link bytes per hollow node per second each way (idle: no pods);
4. API latency while the fleet runs: GET a node, LIST nodes, start a watch (p50/p99);
5. dispatch: a Deployment of ``--pods-per-node`` x N pods that mount a ConfigMap, bound
   by the scheduler and "run" by the hollow runtimes; then the ConfigMap updated once:
   p50/p99 until every node running one of those pods holds the new version;
6. storm: the cloud's nats-server killed (-9) and restarted by the lab's supervisor; every
   link reconnects at once: seconds until every hollow node's heartbeats are acknowledged
   again; Nodes that turned NotReady meanwhile (should be none).

Every phase is bounded in time. Ends with ``RESULT nodes=N ready_s=... storm_s=...
dispatch_p99_ms=... cloud_cores=... cloud_rss_mb=... idle_kbit_s_per_node=...``.

    .venv/bin/python bench/fleet.py --nodes 100 [--pods-per-node 1] [--steady 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgebus.bus import Bus, BusAuth  # noqa: E402
from edgebus.envelope import Envelope  # noqa: E402
from edgebus.identity.cloud import CloudPki  # noqa: E402
from edgebus.lab import Lab, LabPlan, create_token  # noqa: E402
from edgebus.objects import CONFIGMAPS, NODES  # noqa: E402
from edgebus.objectstore import BOOKMARK, DELETED, ObjectStore  # noqa: E402
from edgebus.testing.hollow import HOLLOW_LABEL, HollowFleet, HollowNode  # noqa: E402
from edgebus.testing.labrun import free_base_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
KUBEEDGE_UP_KBIT_S = 0.25
NS = "default"
CM = "fleet-config"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_ticks(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return 0


def cloud_pids(lab: Lab) -> dict[str, int]:
    return {name.split("/", 1)[1]: p.popen.pid for name, p in lab.procs.items() if p.spec.group == "cloud" and p.popen is not None and p.popen.poll() is None}


async def sample_cloud(lab: Lab, seconds: float) -> dict[str, tuple[float, float]]:
    """Per cloud process: (cores used over ``seconds``, RSS MB at the end)."""
    pids = cloud_pids(lab)
    c0, t0 = {n: cpu_ticks(p) for n, p in pids.items()}, time.monotonic()
    await asyncio.sleep(seconds)
    dt = time.monotonic() - t0
    return {n: ((cpu_ticks(p) - c0[n]) / TICK / dt, rss_mb(p)) for n, p in pids.items()}


class NodeWatch:
    """Every node's Ready status from a watch, and nodes that left Ready after being Ready."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.ready: dict[str, bool] = {}
        self.flaps: list[str] = []
        self.synced = asyncio.Event()

    async def run(self) -> None:
        async with aclosing(self.store.watch([NODES], bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    self.synced.set()
                    continue
                name = ev.object["metadata"]["name"]
                if ev.type == DELETED:
                    self.ready.pop(name, None)
                    continue
                ok = any(c.get("type") == "Ready" and c.get("status") == "True" for c in (ev.object.get("status") or {}).get("conditions") or [])
                if self.ready.get(name) and not ok:
                    self.flaps.append(name)
                self.ready[name] = ok

    def count(self, names: list[str]) -> int:
        return sum(1 for n in names if self.ready.get(n))


async def until(cond: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(interval)
    return bool(cond())


def deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "fleet", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "fleet"}},
            "template": {
                "metadata": {"labels": {"app": "fleet"}},
                "spec": {
                    "nodeSelector": {HOLLOW_LABEL: "true"},
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": "docker.io/library/busybox:edgebus", "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}],
                    "volumes": [{"name": "cfg", "configMap": {"name": CM}}],
                },
            },
        },
    }


async def api_latency(api: httpx.AsyncClient, node: str, rounds: int, deadline: float) -> tuple[dict[str, list[float]], int]:
    """Latencies of successful calls, and the number of failed ones (5xx, timeouts)."""
    out: dict[str, list[float]] = {"get": [], "list": [], "watch": []}
    failed = 0

    async def timed(kind: str, call: Any) -> None:
        nonlocal failed
        t = time.monotonic()
        try:
            await call()
            out[kind].append(time.monotonic() - t)
        except (httpx.HTTPError, TimeoutError):
            failed += 1

    async def get() -> None:
        (await api.get(f"/api/v1/nodes/{node}")).raise_for_status()

    async def list_() -> None:
        (await api.get("/api/v1/nodes?limit=500")).raise_for_status()

    async def watch() -> None:
        async with api.stream("GET", f"/api/v1/nodes?watch=1&fieldSelector=metadata.name%3D{node}&timeoutSeconds=5") as r:
            r.raise_for_status()
            async for _ in r.aiter_bytes():
                break  # the first event (ADDED of the current object)

    for i in range(rounds):
        if time.monotonic() > deadline:
            break
        await timed("get", get)
        if i % 10 == 0:
            await timed("list", list_)
            await timed("watch", watch)
    return out, failed


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--pods-per-node", type=int, default=1)
    ap.add_argument("--steady", type=float, default=30.0, help="seconds of steady state sampled")
    ap.add_argument("--no-storm", action="store_true")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds the whole run may take")
    args = ap.parse_args()
    t_start = time.monotonic()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.nodes + 1024)), hard))
    load0 = os.getloadavg()

    tmp = Path(tempfile.mkdtemp(prefix="edgebus-bench-fleet-"))
    plan = LabPlan(data_dir=str(tmp / "lab"), nodes=["edge-1"], base_port=free_base_port(1), devices=False, containerd=False, log_level="WARNING")
    lab = Lab(plan, die_with_supervisor=True)
    await lab.up()
    pki = CloudPki(plan.cloud_pki_dir)
    bus = Bus(plan.cloud_nats_url, name="bench-fleet", request_timeout=30, auth=BusAuth(creds_file=str(pki.creds_file("admin")), ca_file=plan.tls_ca_file))
    await bus.connect(retry_for=30)
    store = ObjectStore(bus)
    watch = NodeWatch(store)
    tasks: list[asyncio.Task[Any]] = []
    cm_seen: dict[str, float] = {}
    cm_version = {"want": ""}

    def on_down(h: HollowNode, subject: str, env: Envelope) -> None:
        if env.route.resource == "configmaps" and isinstance(env.content, dict) and (env.content.get("data") or {}).get("version") == cm_version["want"]:
            cm_seen.setdefault(h.name, time.monotonic())

    fleet = HollowFleet(tmp / "hollow", host=plan.host, leaf_port=plan.cloud_leaf_port, ca_file=str(plan.ca_file), heartbeat=plan.heartbeat, status_interval=300.0, on_downstream=on_down)
    names_ = [f"hollow-{i:05d}" for i in range(args.nodes)]
    res: dict[str, Any] = {}
    try:
        tasks.append(asyncio.create_task(watch.run()))
        await asyncio.wait_for(watch.synced.wait(), 60)
        tok = await create_token(plan, uses=None, ttl=3600.0, description="hollow fleet")
        join_s = await fleet.join(bus, names_, tok.bootstrap, parallel=32)
        print(f"joined {args.nodes} hollow nodes through cloudhub in {join_s:.1f} s ({args.nodes / join_s:.0f}/s)", flush=True)

        # -- 2. all Ready ------------------------------------------------------------------
        t0 = time.monotonic()
        await fleet.connect(parallel=64, timeout=min(300.0, args.budget / 3))
        t_conn = time.monotonic() - t0
        fleet.start()
        ok = await until(lambda: watch.count(names_) == args.nodes, timeout=min(300.0, args.budget / 3))
        res["ready_s"] = time.monotonic() - t0
        print(f"connect all {args.nodes} links: {t_conn:.1f} s; all Ready after {res['ready_s']:.1f} s{'' if ok else f' (NOT all: {watch.count(names_)})'}", flush=True)

        # -- 3. steady state ---------------------------------------------------------------
        await asyncio.sleep(min(15.0, plan.heartbeat * 1.5))
        b_up, b_down, tb = fleet.stats.bytes_up, fleet.stats.bytes_down, time.monotonic()
        cloud = await sample_cloud(lab, args.steady)
        span = time.monotonic() - tb
        up_kbit = (fleet.stats.bytes_up - b_up) * 8 / 1000 / span / args.nodes
        down_kbit = (fleet.stats.bytes_down - b_down) * 8 / 1000 / span / args.nodes
        res["cloud_cores"] = sum(c for c, _ in cloud.values())
        res["cloud_rss_mb"] = sum(r for _, r in cloud.values())
        res["idle_up"], res["idle_down"] = up_kbit, down_kbit
        print(f"steady state over {args.steady:.0f} s (idle: no pods), load average {os.getloadavg()[0]:.1f}")
        for n, (c, r) in sorted(cloud.items(), key=lambda kv: -kv[1][0]):
            print(f"  {n:28s} {c:6.3f} cores  {r:7.1f} MB")
        print(f"  {'cloud total':28s} {res['cloud_cores']:6.3f} cores  {res['cloud_rss_mb']:7.1f} MB")
        print(f"  link per hollow node: up {up_kbit:.3f} kbit/s, down {down_kbit:.3f} kbit/s (TLS payload, no compression); KubeEdge uplink 0.25 kbit/s -> {up_kbit / KUBEEDGE_UP_KBIT_S:.2f}x")

        # -- 4. API latency ----------------------------------------------------------------
        async with httpx.AsyncClient(base_url=plan.apiserver_url, timeout=30, **plan.http_kwargs()) as api:
            lat, failed = await api_latency(api, names_[len(names_) // 2], 100, time.monotonic() + 120)
            res["api_get_p99_ms"] = pct(lat["get"], 99) * 1000
            print(
                "API latency while the fleet runs: "
                + ", ".join(f"{k} p50 {pct(v, 50) * 1000:.1f} / p99 {pct(v, 99) * 1000:.1f} ms" for k, v in lat.items())
                + f" (list: {args.nodes + 1} nodes, 500 per page); {failed} calls failed (5xx or timeout)",
                flush=True,
            )

            # -- 5. dispatch ---------------------------------------------------------------
            res["dispatch_p99_ms"] = float("nan")
            left = args.budget - (time.monotonic() - t_start) - 120
            if left > 30 and watch.count(names_) == args.nodes:
                await store.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CM, "namespace": NS}, "data": {"version": "1"}}, namespace=NS)
                replicas = args.pods_per_node * args.nodes
                td = time.monotonic()
                (await api.post(f"/apis/apps/v1/namespaces/{NS}/deployments", json=deployment(replicas))).raise_for_status()

                def running() -> int:
                    return sum(len(h.pods) for h in fleet.nodes.values())

                ok = await until(lambda: running() >= replicas, timeout=min(left * 0.6, 300.0), interval=0.5)
                dep_s = time.monotonic() - td
                with_pods = [h.name for h in fleet.nodes.values() if h.pods]
                print(f"Deployment of {replicas} pods ({args.pods_per_node} per node): {running()} running on {len(with_pods)} nodes after {dep_s:.1f} s ({running() / dep_s:.0f} pods/s){'' if ok else ' (time bound reached)'}", flush=True)
                res["deploy_s"], res["pods"] = dep_s, running()
                await asyncio.sleep(3)
                cm_version["want"] = "2"
                tc = time.monotonic()
                cur = await store.get(CONFIGMAPS, NS, CM)
                cur["data"] = {"version": "2"}
                await store.replace_at(CONFIGMAPS, cur)
                await until(lambda: all(n in cm_seen for n in with_pods), timeout=60, interval=0.05)
                d = [cm_seen[n] - tc for n in with_pods if n in cm_seen]
                res["dispatch_p99_ms"] = pct(d, 99) * 1000
                print(f"ConfigMap update -> held by {len(d)}/{len(with_pods)} nodes with its pods: p50 {pct(d, 50) * 1000:.0f} ms, p99 {res['dispatch_p99_ms']:.0f} ms, last {max(d, default=float('nan')) * 1000:.0f} ms", flush=True)
            else:
                print("dispatch skipped: time budget, or not every node Ready")

        # -- 6. storm ----------------------------------------------------------------------
        res["storm_s"] = float("nan")
        errors0 = len(fleet.stats.errors)
        if not args.no_storm and args.budget - (time.monotonic() - t_start) > 90:
            flaps0 = len(watch.flaps)
            nats = lab.procs["cloud/nats"]
            assert nats.popen is not None
            acked0 = {}
            ts = time.monotonic()
            os.kill(nats.popen.pid, signal.SIGKILL)
            await asyncio.to_thread(nats.popen.wait, 15)
            await until(lambda: sum(1 for h in fleet.nodes.values() if h.connected.is_set()) == 0, timeout=20)
            print(f"cloud nats-server killed; {sum(1 for h in fleet.nodes.values() if not h.connected.is_set())} links down; starting it again", flush=True)
            lab._spawn(nats)  # what the lab's watchdog (edgebus up) does
            await lab._wait_ready(nats)
            for h in fleet.nodes.values():
                acked0[h.name] = h.seq
            # a node is back when a heartbeat sent after the restart is acknowledged
            ok = await until(lambda: all(h.connected.is_set() and h.seq > acked0[h.name] and not any(int(t) > acked0[h.name] for t in h.pending) for h in fleet.nodes.values()), timeout=min(180.0, args.budget - (time.monotonic() - t_start) - 20), interval=0.2)
            res["storm_s"] = time.monotonic() - ts
            back = sum(1 for h in fleet.nodes.values() if h.connected.is_set())
            await asyncio.sleep(2)
            flaps = len(watch.flaps) - flaps0
            print(f"storm: every link back and acknowledged {res['storm_s']:.1f} s after the kill{'' if ok else ' (time bound reached)'}; {back}/{args.nodes} connected; Nodes falsely NotReady: {flaps}; all Ready now: {watch.count(names_)}/{args.nodes}", flush=True)
            res["flaps"] = flaps
        print(f"errors seen by hollow nodes: {errors0} before the storm {fleet.stats.errors[:3]}; {len(fleet.stats.errors) - errors0} connection attempts refused while the cloud's server was down")
        load1 = os.getloadavg()
        print(f"machine load average: {load0[0]:.1f} at start, {load1[0]:.1f} at end (2 cores, shared)")
    except Exception as exc:  # noqa: BLE001 - a phase failed: say so, still print what was measured
        print(f"run stopped: {exc!r}")
    finally:
        nan = float("nan")
        print(
            f"RESULT nodes={args.nodes} ready_s={res.get('ready_s', nan):.1f} storm_s={res.get('storm_s', nan):.1f} dispatch_p99_ms={res.get('dispatch_p99_ms', nan):.0f} "
            f"cloud_cores={res.get('cloud_cores', nan):.2f} cloud_rss_mb={res.get('cloud_rss_mb', nan):.0f} idle_kbit_s_per_node={res.get('idle_up', nan):.3f} "
            f"api_get_p99_ms={res.get('api_get_p99_ms', nan):.1f} ready_nodes={watch.count(names_)}",
            flush=True,
        )
        await fleet.stop()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        await lab.down()


if __name__ == "__main__":
    asyncio.run(main())
