"""Pod startup benchmark: API create -> ``Running`` seen in the cloud.

Starts a lab (cloud + one edge node with its private containerd, every module its own
process; the image is present) and measures, for 20 pods each:

1. sequential: create one pod, wait until the cloud shows it Running, next;
2. burst: create 20 pods at once (concurrent API calls), each timed from its own create;

and, in the same run against the same containerd, the share spent in containerd itself:
the time edged's CRI calls took (its ``edgebus_cri_seconds`` histogram, scraped from its
``/metrics``), and a baseline that drives containerd directly over CRI (sandbox + create +
start, no edgebus at all). Prints p50/p90/p99 and the ratios.

    .venv/bin/python bench/pod_startup.py [--pods 20]

Needs root and containerd (``./dev setup`` installs it), like the pod tests.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgebus.cri import CriClient, api, remove_all  # noqa: E402
from edgebus.images import BUSYBOX_IMAGE  # noqa: E402
from edgebus.lab import Lab, LabPlan  # noqa: E402
from edgebus.objects import NODES, PODS  # noqa: E402
from edgebus.objectstore import ObjectStore  # noqa: E402
from edgebus.testing.containerd import skip_reason  # noqa: E402
from edgebus.testing.labrun import free_base_port  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402

NODE = "edge-1"
CRI_METHODS = ("RunPodSandbox", "CreateContainer", "StartContainer", "ImageStatus", "PullImage")


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def fmt(xs: list[float]) -> str:
    return f"p50 {pct(xs, 50) * 1000:7.1f} ms   p90 {pct(xs, 90) * 1000:7.1f} ms   p99 {pct(xs, 99) * 1000:7.1f} ms"


def pod(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
        },
    }


def post(host: str, port: int, body: dict) -> float:
    """Create a pod; returns the time the request was sent."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    t = time.monotonic()
    conn.request("POST", "/api/v1/namespaces/default/pods", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        raise RuntimeError(f"create failed: {r.status}")
    return t


def cri_seconds(url: str) -> dict[str, float]:
    """edged's CRI time per method, from its Prometheus endpoint."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(r'^edgebus_cri_seconds_sum\{method="(\w+)"\} ([0-9.e+-]+)$', text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


class RunningWatch:
    """Notes the first moment the cloud shows each pod Running (one KV watch)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.running: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self.store.kv.last_revision()
        self.task = asyncio.create_task(self._run(rev))

    async def _run(self, rev: int) -> None:
        async with aclosing(self.store.watch([PODS], "default", from_revision=rev)) as it:
            async for ev in it:
                name = ev.object["metadata"]["name"]
                if (ev.object.get("status") or {}).get("phase") == "Running" and name not in self.running:
                    self.running[name] = time.monotonic()

    async def wait(self, names: list[str], timeout: float = 60) -> None:
        await eventually(lambda: all(n in self.running for n in names), timeout=timeout, interval=0.005, msg="pods Running")


async def baseline(address: str, n: int, logdir: Path, *, concurrent: bool) -> list[float]:
    """containerd alone: sandbox + create + start per pod over CRI (one after the other,
    or all at once), no edgebus involved."""
    cri = CriClient(address)
    labels = {"io.edgebus.node": "bench-baseline"}
    tag = "c" if concurrent else "s"

    async def one(i: int) -> float:
        sb = api.PodSandboxConfig(
            metadata=api.PodSandboxMetadata(name=f"base-{tag}{i}", namespace="bench", uid=f"base-uid-{tag}{i}", attempt=0),
            log_directory=str(logdir / f"{tag}{i}"),
            labels=labels,
            linux=api.LinuxPodSandboxConfig(security_context=api.LinuxSandboxSecurityContext(namespace_options=api.NamespaceOption(network=api.NODE))),
        )
        t = time.monotonic()
        sid = await cri.run_pod_sandbox(sb)
        await cri.image_status(BUSYBOX_IMAGE)
        cc = api.ContainerConfig(metadata=api.ContainerMetadata(name="main"), image=api.ImageSpec(image=BUSYBOX_IMAGE), command=["sleep", "3600"], log_path="main/0.log", labels=labels)
        cid = await cri.create_container(sid, cc, sb)
        await cri.start_container(cid)
        return time.monotonic() - t

    try:
        if concurrent:
            out = list(await asyncio.gather(*(one(i) for i in range(n))))
        else:
            out = [await one(i) for i in range(n)]
        await remove_all(cri, labels)
    finally:
        await cri.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=20)
    args = ap.parse_args()
    why = skip_reason()
    if why:
        print(f"pod_startup: skipped: {why}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="edgebus-bench-pods-"))
    plan = LabPlan(data_dir=str(tmp / "lab"), nodes=[NODE], base_port=free_base_port(1), heartbeat=2.0, devices=False, log_level="WARNING")
    lab = Lab(plan, die_with_supervisor=True)
    print(f"starting lab in {tmp} ...", flush=True)
    await lab.up()
    bus = plan.cloud_bus("bench", request_timeout=10)
    await bus.connect(retry_for=10)
    store = ObjectStore(bus)
    host, port = "127.0.0.1", plan.apiserver_port
    metrics = f"http://127.0.0.1:{plan.edged_ops_port(NODE)}/metrics"
    watch: RunningWatch | None = None
    try:

        async def runtime_ready() -> bool:
            n = await store.get(NODES, None, NODE)
            return any(c["type"] == "ContainerRuntimeReady" and c["status"] == "True" for c in n["status"].get("conditions", []))

        await eventually(runtime_ready, timeout=60, msg="edge-1's container runtime ready")
        watch = RunningWatch(store)
        await watch.start()
        loop = asyncio.get_running_loop()

        # warm-up (first sandbox, image status caches, connections)
        await loop.run_in_executor(None, post, host, port, pod("warmup"))
        await watch.wait(["warmup"])

        # 1. sequential
        seq: list[float] = []
        before = cri_seconds(metrics)
        for i in range(args.pods):
            name = f"seq-{i:02d}"
            t = await loop.run_in_executor(None, post, host, port, pod(name))
            await watch.wait([name])
            seq.append(watch.running[name] - t)
        after = cri_seconds(metrics)
        seq_cri = sum(after.get(m, 0) - before.get(m, 0) for m in CRI_METHODS) / args.pods

        # 2. burst
        names = [f"burst-{i:02d}" for i in range(args.pods)]
        before = cri_seconds(metrics)
        with ThreadPoolExecutor(max_workers=args.pods) as ex:
            sent = list(await asyncio.gather(*(loop.run_in_executor(ex, post, host, port, pod(n)) for n in names)))
        await watch.wait(names, timeout=120)
        burst = [watch.running[n] - t for n, t in zip(names, sent, strict=True)]
        after = cri_seconds(metrics)
        burst_cri = sum(after.get(m, 0) - before.get(m, 0) for m in CRI_METHODS) / args.pods

        # 3. containerd alone, same containerd, same run
        base = await baseline(plan.node_containerd(NODE).address, args.pods, tmp / "baseline-logs", concurrent=False)
        base_burst = await baseline(plan.node_containerd(NODE).address, args.pods, tmp / "baseline-logs", concurrent=True)

        print()
        print(f"edgebus pod startup: API create -> Running seen in the cloud ({args.pods} pods, image present, cloud + 1 edge node as processes)")
        print(f"  sequential        {fmt(seq)}")
        print(f"  burst of {args.pods:<3}      {fmt(burst)}")
        print("containerd itself")
        print(f"  edged's CRI calls per pod (sandbox, create, start, image status): sequential {seq_cri * 1000:6.1f} ms, burst {burst_cri * 1000:6.1f} ms")
        print(f"  baseline, CRI sandbox+create+start without edgebus, sequential   {fmt(base)}")
        print(f"  baseline, the same for {args.pods} pods at once                      {fmt(base_burst)}")
        print("ratios")
        mean_seq = sum(seq) / len(seq)
        mean_burst = sum(burst) / len(burst)
        print(f"  share of the startup spent in containerd (edged's CRI time / latency): sequential {seq_cri / mean_seq:4.0%}, burst {burst_cri / mean_burst:4.0%}")
        print(f"  edgebus / containerd alone:  sequential p50 {pct(seq, 50) / pct(base, 50):4.1f}x  p99 {pct(seq, 99) / pct(base, 99):4.1f}x;  burst p50 {pct(burst, 50) / pct(base_burst, 50):4.1f}x  p99 {pct(burst, 99) / pct(base_burst, 99):4.1f}x")
        print("  reference: KubeEdge 1688 / 2751 / 4087 ms (p50/p90/p99, at 100k-node scale); K3s cold start 3.1 s")
        print(f"target p99 <= 1 s: sequential {'met' if pct(seq, 99) <= 1.0 else 'NOT met'} ({pct(seq, 99):.2f} s); "
              f"burst {'met' if pct(burst, 99) <= 1.0 else 'NOT met'} ({pct(burst, 99):.2f} s; containerd alone {pct(base_burst, 99):.2f} s for the same burst)")
    finally:
        if watch is not None and watch.task is not None:
            watch.task.cancel()
            await asyncio.gather(watch.task, return_exceptions=True)
        await bus.close()
        await lab.down()


if __name__ == "__main__":
    asyncio.run(main())
