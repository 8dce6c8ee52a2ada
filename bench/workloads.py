"""Scheduling benchmark: a workload of 1,000 pods over the lab's nodes, from apply to all
bound.

Starts a lab (cloud + the edge nodes as processes, every module its own process) and adds
hollow nodes: Node objects with allocatable resources whose heartbeats the benchmark
publishes into ``EDGEBUS_UP`` exactly as a node's edgehub forwards them, so they stay
Ready; no containers run (the pods target the hollow nodes with a nodeSelector). Then:

1. the workload: a Deployment of ``--pods`` replicas when ``apps/v1`` is served (its
   controller creates the pods through the object store), else the same number of bare
   pods created in a burst the way a controller does, through the object store
   (``--parallel`` at once; ``--via-api`` posts them to the apiserver instead);
2. bind latency: from the pod's creation (the create call's answer; for a Deployment, the
   watch seeing the pod) to a watch in this process seeing it bound, p50/p99; the time
   from apply to all bound, and the throughput in pods/s;
3. baselines in the same run: the same number of bindings written directly to the
   object store by this process (no scheduler: the floor the store sets), and
   kube-scheduler's published default: its client is limited to 50 requests/s
   sustained, 100 burst (``clientConnection.qps: 50``, ``burst: 100``, the
   KubeSchedulerConfiguration v1 defaults in kubernetes/pkg/scheduler/apis/config/v1/
   defaults.go; https://kubernetes.io/docs/reference/config-api/kube-scheduler-config.v1/),
   and each binding is one request: 50 pods/s.

    .venv/bin/python bench/workloads.py [--pods 1000] [--hollow 50] [--parallel 64] [--via-api]

Ends with ``RESULT bind_p99_ms=... pods_per_s=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgebus import names  # noqa: E402
from edgebus.bus import Bus  # noqa: E402
from edgebus.envelope import Envelope  # noqa: E402
from edgebus.lab import Lab, LabPlan  # noqa: E402
from edgebus.objects import NODES, PODS  # noqa: E402
from edgebus.objectstore import BOOKMARK, ObjectStore  # noqa: E402
from edgebus.testing.labrun import free_base_port  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402

#: kube-scheduler's default client rate limit (requests/s sustained; 100 burst): one
#: binding is one request
KUBE_SCHEDULER_DEFAULT_PODS_PER_S = 50.0
HOLLOW = "edgebus.io/hollow"
NS = "default"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def hollow_node(i: int) -> dict[str, Any]:
    name = f"hollow-{i:03d}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, HOLLOW: "true", "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
        "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}, "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"}},
    }


def template() -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "bench"}},
        "spec": {
            "nodeSelector": {HOLLOW: "true"},
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": "docker.io/library/busybox:edgebus", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
        },
    }


def deployment(n: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bench", "namespace": NS},
        "spec": {"replicas": n, "selector": {"matchLabels": {"app": "bench"}}, "template": template()},
    }


def bare_pod(i: int) -> dict[str, Any]:
    t = template()
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i:05d}", "namespace": NS, **t["metadata"]}, "spec": t["spec"]}


class Binds:
    """Sees, through a watch, when each pod of the workload was created and bound."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.created: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.where: dict[str, str] = {}
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async with aclosing(self.store.watch([PODS], NS, label_selector="app=bench", bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    self.ready.set()
                    continue
                now = time.monotonic()
                name = ev.object["metadata"]["name"]
                self.created.setdefault(name, now)  # bare pods: replaced by the create's answer
                node = (ev.object.get("spec") or {}).get("nodeName")
                if node and name not in self.bound:
                    self.bound[name] = now
                    self.where[name] = node


async def heartbeats(bus: Bus, nodes: list[str], stop: asyncio.Event) -> None:
    """Keep the hollow nodes alive: what their edgehub forwarder would publish."""
    while not stop.is_set():
        for n in nodes:
            env = Envelope.new(source="edgehub", operation="keepalive", resource="nodes", content={"node": n, "time": time.time_ns(), "link": True})
            await bus.js_publish(names.up_subject(n, names.UP_HEARTBEAT), env, stream=names.STREAM_UP)
        try:
            await asyncio.wait_for(stop.wait(), 5.0)
        except TimeoutError:
            pass


async def direct_baseline(store: ObjectStore, n: int, nodes: list[str], parallel: int) -> float:
    """The same number of bindings written straight to the store (no scheduler): seconds."""
    created = []
    for i in range(n):
        p = bare_pod(i)
        p["metadata"]["name"] = f"direct-{i:05d}"
        p["metadata"]["labels"] = {"app": "direct"}
        p["spec"]["schedulerName"] = "nobody"  # the scheduler leaves these alone
        created.append(p)
    sem = asyncio.Semaphore(parallel)

    async def make(p: dict[str, Any]) -> dict[str, Any]:
        async with sem:
            return await store.create(PODS, p, namespace=NS)

    objs = await asyncio.gather(*(make(p) for p in created))
    t0 = time.monotonic()

    async def bind(i: int, obj: dict[str, Any]) -> None:
        async with sem:
            obj["spec"]["nodeName"] = nodes[i % len(nodes)]
            await store.replace_at(PODS, obj)

    await asyncio.gather(*(bind(i, o) for i, o in enumerate(objs)))
    return time.monotonic() - t0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--hollow", type=int, default=50, help="hollow nodes the pods go to")
    ap.add_argument("--parallel", type=int, default=64, help="creates in flight for bare pods")
    ap.add_argument("--via-api", action="store_true", help="create bare pods through the apiserver's HTTP API")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgebus-bench-workloads-"))
    plan = LabPlan(data_dir=str(tmp / "lab"), nodes=["edge-1", "edge-2"], base_port=free_base_port(2), token="bench", devices=False, containerd=False, log_level="WARNING")
    lab = Lab(plan, die_with_supervisor=True)
    await lab.up()
    bus = Bus(plan.cloud_nats_url, name="bench", request_timeout=10)
    await bus.connect(retry_for=10)
    store = ObjectStore(bus)
    stop = asyncio.Event()
    binds = Binds(store)
    beat: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(base_url=plan.apiserver_url, timeout=30, limits=httpx.Limits(max_connections=args.parallel)) as api:
            hollow = [hollow_node(i) for i in range(args.hollow)]
            for n in hollow:
                r = await api.post("/api/v1/nodes", json=n)
                r.raise_for_status()
                cur = r.json()
                cur["status"] = n["status"]
                (await api.put(f"/api/v1/nodes/{n['metadata']['name']}/status", json=cur)).raise_for_status()
            hollow_names = [n["metadata"]["name"] for n in hollow]
            beat = asyncio.create_task(heartbeats(bus, hollow_names, stop))

            async def all_ready() -> bool:
                nodes, _ = await store.list(NODES, label_selector=f"{HOLLOW}=true")
                return sum(1 for x in nodes if any(c["type"] == "Ready" and c["status"] == "True" for c in x["status"].get("conditions") or [])) == args.hollow

            await eventually(all_ready, timeout=60, msg="hollow nodes Ready")
            await eventually(lambda: api_ok(api), timeout=30, msg="the scheduler ready")
            binds.task = asyncio.create_task(binds.run())
            await binds.ready.wait()
            apps = (await api.get("/apis/apps/v1")).status_code == 200 and "deployments" in (await api.get("/apis/apps/v1")).text

            t_apply = time.monotonic()
            if apps:
                (await api.post(f"/apis/apps/v1/namespaces/{NS}/deployments", json=deployment(args.pods))).raise_for_status()
                mode = f"a Deployment of {args.pods} replicas"
            else:
                sem = asyncio.Semaphore(args.parallel)

                async def create(i: int) -> None:
                    async with sem:
                        if args.via_api:
                            (await api.post(f"/api/v1/namespaces/{NS}/pods", json=bare_pod(i))).raise_for_status()
                        else:
                            await store.create(PODS, bare_pod(i), namespace=NS)
                        binds.created[bare_pod(i)["metadata"]["name"]] = time.monotonic()

                await asyncio.gather(*(create(i) for i in range(args.pods)))
                how = "the apiserver's HTTP API" if args.via_api else "the object store, as a controller does"
                mode = f"{args.pods} bare pods created in a burst through {how} ({args.parallel} at once; apps/v1 not served)"
            t_created = time.monotonic()
            await eventually(lambda: len(binds.bound) >= args.pods, timeout=600, interval=0.02, msg="all pods bound")
            t_bound = max(binds.bound.values())

        lat = [max(binds.bound[n] - binds.created[n], 0.0) for n in binds.bound]
        per_node = {n: 0 for n in hollow_names}
        for node in binds.where.values():
            per_node[node] = per_node.get(node, 0) + 1
        wall = t_bound - t_apply
        pods_per_s = args.pods / wall
        direct = await direct_baseline(store, args.pods, hollow_names, args.parallel)
        print()
        print(f"edgebus scheduling: {mode} over {args.hollow} hollow nodes (lab: cloud + 2 edge nodes as processes)")
        print(f"  apply -> all bound        {wall:7.2f} s   ({pods_per_s:7.1f} pods/s; creating them took {t_created - t_apply:.2f} s)")
        print(f"  bind latency (created -> bound, seen by a watch)  p50 {pct(lat, 50) * 1000:7.1f} ms   p90 {pct(lat, 90) * 1000:7.1f} ms   p99 {pct(lat, 99) * 1000:7.1f} ms")
        print(f"  spread: {min(per_node.values())}..{max(per_node.values())} pods per hollow node (ideal {args.pods / args.hollow:.0f})")
        print("baselines (same run)")
        print(f"  the same {args.pods} bindings written straight to the store by one process: {direct:.2f} s ({args.pods / direct:.0f} pods/s)")
        print(f"  kube-scheduler's default client limit: {KUBE_SCHEDULER_DEFAULT_PODS_PER_S:.0f} pods/s sustained (qps 50, burst 100)")
        print("ratios")
        print(f"  edgebus / kube-scheduler default: {pods_per_s / KUBE_SCHEDULER_DEFAULT_PODS_PER_S:5.1f}x")
        print(f"  edgebus / direct store writes:    {pods_per_s / (args.pods / direct):5.2f}x")
        print(f"RESULT bind_p99_ms={pct(lat, 99) * 1000:.1f} pods_per_s={pods_per_s:.1f}")
    finally:
        stop.set()
        for t in (beat, binds.task):
            if t is not None:
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)
        await bus.close()
        await lab.down()


async def api_ok(api: httpx.AsyncClient) -> bool:
    return (await api.get("/readyz")).status_code == 200


if __name__ == "__main__":
    asyncio.run(main())
