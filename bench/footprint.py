"""Edge footprint benchmark: what an edge node costs in memory, CPU, disk and start time, in
both ways of running it - every edge service its own process, or all in one process.

For each mode it starts a lab (the cloud, and edge-1 with its private containerd when the
machine can run pods), then measures edge-1's processes (its nats-server included;
containerd, its shims and the lab's simulated device are not counted - containerd is printed
beside):

1. bare node, idle: RSS and PSS per process and in total; idle CPU (% of one core over
   ``--cpu-seconds``); the node's start time to Ready (all its processes stopped, then
   started again until each answers ready);
2. 10 pods running (busybox, host network);
3. 10 pods and 5 Modbus devices (simulated in this process) reporting every second: the
   Modbus mapper is then running (started on demand);

and LMDB and JetStream disk use at the end. Then the ratios: to KubeEdge's published 380 MB
idle (edgecore on a Raspberry Pi 4) and all-in-one to process-per-service. ``--runs N``
repeats everything N times and prints the spread; the RESULT line has the medians. A last
section imports the all-in-one process's modules one by one in a fresh interpreter and
prints what each adds (what the memory is made of).

    .venv/bin/python bench/footprint.py [--runs 3] [--cpu-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgebus.devices.simulators import ModbusThermostat  # noqa: E402
from edgebus.images import BUSYBOX_IMAGE  # noqa: E402
from edgebus.lab import Lab, LabPlan  # noqa: E402
from edgebus.natsd import free_port  # noqa: E402
from edgebus.objects import DEVICEMODELS, DEVICES, NODES, PODS  # noqa: E402
from edgebus.objectstore import ObjectStore  # noqa: E402
from edgebus.testing.containerd import skip_reason  # noqa: E402
from edgebus.testing.labrun import free_base_port  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402

NODE = "edge-1"
KUBEEDGE_IDLE_MB = 380.0  # edgecore idle on a Raspberry Pi 4, as published
TICK = os.sysconf("SC_CLK_TCK")
MODES = {"processes": False, "all-in-one": True}
STAGES = ("bare", "10 pods", "10 pods + 5 devices")


# -- /proc ------------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_ticks(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(p.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def du_mb(path: Path) -> float:
    total = 0
    for p in path.rglob("*") if path.exists() else []:
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_blocks * 512
        except OSError:
            pass
    return total / 2**20


# -- the lab -------------------------------------------------------------------------------
def node_pids(lab: Lab) -> dict[str, int]:
    """edge-1's processes that count (not containerd, not the simulated device)."""
    out = {}
    for name, p in lab.procs.items():
        if p.spec.group == NODE and not p.spec.cri_address and not name.endswith("/modbus-sim") and p.popen is not None and p.popen.poll() is None:
            out[name.split("/", 1)[1]] = p.popen.pid
    return out


def containerd_mb(lab: Lab) -> tuple[float, int]:
    """containerd's RSS and its shims' (the processes it started), and the shim count."""
    for p in lab.procs.values():
        if p.spec.group == NODE and p.spec.cri_address and p.popen is not None and p.popen.poll() is None:
            shims: list[int] = []
            for pid in Path("/proc").iterdir():
                if pid.name.isdigit():
                    try:
                        if b"containerd-shim" in (pid / "cmdline").read_bytes() and str(lab.plan.node_containerd(NODE).run_dir) in (pid / "cmdline").read_text():
                            shims.append(int(pid.name))
                    except OSError:
                        pass
            return rss_mb(p.popen.pid) + sum(rss_mb(s) for s in shims), len(shims)
    return 0.0, 0


def snapshot(lab: Lab) -> dict[str, tuple[float, float]]:
    return {name: (rss_mb(pid), pss_mb(pid)) for name, pid in node_pids(lab).items()}


async def idle_cpu(lab: Lab, seconds: float) -> tuple[float, dict[str, float]]:
    """edge-1's CPU over ``seconds``: % of one core in total, and per process."""
    pids = node_pids(lab)
    t0, c0 = time.monotonic(), {n: cpu_ticks(p) for n, p in pids.items()}
    await asyncio.sleep(seconds)
    dt = time.monotonic() - t0
    per = {n: (cpu_ticks(p) - c0[n]) / TICK / dt * 100 for n, p in pids.items()}
    return sum(per.values()), per


def pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
        },
    }


def devices(ports: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    model, dev = list(yaml.safe_load_all((ROOT / "examples" / "thermostat.yaml").read_text()))[:2]
    out = []
    for i, port in enumerate(ports):
        d = copy.deepcopy(dev)
        d["metadata"] = {"name": f"meter-{i}", "namespace": "default"}
        d["spec"]["protocol"]["configData"]["port"] = port
        for p in d["spec"]["properties"]:
            p["collectCycle"] = 1000
            p["reportCycle"] = 1000
        out.append(d)
    return model, out


async def running(store: ObjectStore, names: list[str]) -> bool:
    for n in names:
        st = (await store.get(PODS, "default", n)).get("status") or {}
        if st.get("phase") != "Running":
            return False
    return True


async def online(store: ObjectStore, n: int) -> bool:
    devs, _ = await store.list(DEVICES, "default")
    return sum(1 for d in devs if (d.get("status") or {}).get("state") == "online" and (d["status"].get("twins") or [])) >= n


async def node_ready(store: ObjectStore) -> bool:
    n = await store.get(NODES, None, NODE)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))


async def run_mode(mode: str, args: argparse.Namespace, pods_ok: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"edgebus-footprint-{mode}-"))
    plan = LabPlan(data_dir=str(tmp / "lab"), nodes=[NODE], base_port=free_base_port(1), grace=30.0, all_in_one=MODES[mode], containerd=pods_ok or False)
    lab = Lab(plan, die_with_supervisor=True)
    await lab.up()
    cloud = plan.cloud_bus("bench-footprint")
    await cloud.connect(retry_for=10)
    store = ObjectStore(cloud)
    sims: list[ModbusThermostat] = []
    out: dict[str, Any] = {"mode": mode, "stages": {}}
    try:
        await eventually(lambda: node_ready(store), timeout=60, msg="edge-1 Ready")
        # start time: the node's processes stopped, then started until each answers ready
        await lab.stop_group(NODE)
        t0 = time.monotonic()
        await lab.start_group(NODE)
        out["start_s"] = time.monotonic() - t0
        await eventually(lambda: node_ready(store), timeout=60, msg="edge-1 Ready again")
        await asyncio.sleep(args.settle)
        out["stages"]["bare"] = snapshot(lab)
        out["idle_cpu_pct"], out["idle_cpu_per"] = await idle_cpu(lab, args.cpu_seconds)
        out["containerd"] = containerd_mb(lab)
        if pods_ok:
            names = [f"fp-{i:02d}" for i in range(10)]
            for n in names:
                await store.create(PODS, pod(n))
            await eventually(lambda: running(store, names), timeout=120, interval=0.5, msg="10 pods Running")
            await asyncio.sleep(args.settle)
            out["stages"]["10 pods"] = snapshot(lab)
            out["containerd_pods"] = containerd_mb(lab)
        for _ in range(5):
            sims.append(ModbusThermostat(port=free_port(), drift=True, tick=0.5))
            await sims[-1].start()
        model, devs = devices([s.port for s in sims])
        await store.create(DEVICEMODELS, model)
        for d in devs:
            await store.create(DEVICES, d)
        await eventually(lambda: online(store, 5), timeout=120, interval=0.5, msg="5 devices online and reporting")
        await asyncio.sleep(args.settle)
        out["stages"]["10 pods + 5 devices" if pods_ok else "5 devices"] = snapshot(lab)
        out["busy_cpu_pct"], _ = await idle_cpu(lab, min(args.cpu_seconds, 20.0))
        d = Path(plan.data_dir, "nodes", NODE)
        out["disk"] = {"lmdb_mb": du_mb(d / "metamanager") + du_mb(d / "devicetwin"), "jetstream_mb": du_mb(d / "nats" / "js")}
    finally:
        for s in sims:
            await s.stop()
        await cloud.close()
        await lab.down()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    return out


def total(stage: dict[str, tuple[float, float]]) -> tuple[float, float]:
    return sum(r for r, _ in stage.values()), sum(p for _, p in stage.values())


def report(run: dict[str, Any]) -> None:
    print(f"\n== {run['mode']}: start to Ready {run['start_s']:.2f} s; idle CPU {run['idle_cpu_pct']:.2f}% of a core; with devices {run['busy_cpu_pct']:.2f}%")
    print(f"   idle CPU per process: {', '.join(f'{n} {c:.2f}%' for n, c in sorted(run['idle_cpu_per'].items()))}")
    for stage, procs in run["stages"].items():
        rss, pss = total(procs)
        print(f"   {stage:<22} total RSS {rss:6.1f} MB  PSS {pss:6.1f} MB   ({', '.join(f'{n} {r:.1f}/{p:.1f}' for n, (r, p) in sorted(procs.items()))})")
    c, shims = run["containerd"]
    line = f"   not counted: containerd {c:.1f} MB idle"
    if "containerd_pods" in run:
        line += f", {run['containerd_pods'][0]:.1f} MB with 10 pods ({run['containerd_pods'][1]} shims)"
    print(line)
    print(f"   disk: LMDB {run['disk']['lmdb_mb']:.1f} MB, JetStream {run['disk']['jetstream_mb']:.1f} MB")


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} (min {min(xs):.1f}, max {max(xs):.1f})" if len(xs) > 1 else f"{xs[0]:.1f}"


def import_breakdown() -> None:
    """What the all-in-one process's memory is made of: its modules imported one by one."""
    code = r"""
import importlib, sys
def rss():
    for l in open('/proc/self/status'):
        if l.startswith('VmRSS'): return int(l.split()[1]) / 1024
b = rss(); print(f"   {'python interpreter':<44} {b:6.1f} MB")
for m in sys.argv[1:]:
    importlib.import_module(m); r = rss(); print(f"   {m:<44} {r:6.1f} MB  (+{r - b:.1f})"); b = r
"""
    mods = [
        "asyncio",
        "nats",
        "pydantic",
        "pydantic_settings",
        "prometheus_client",
        "edgebus.allinone.host",
        "services.metamanager.service",
        "services.edgehub.service",
        "grpc",
        "cri_api.v1.api_pb2",
        "services.edged.service",
        "services.devicetwin.service",
        "services.mappers.modbus.service",
        "services.edgemesh.service",
        "services.metamanager.metaserver",
        "services.mappers.opcua.service",
    ]
    print("\n== what the all-in-one process is made of (a fresh interpreter, each import's RSS increment):")
    print("   (the last three load only when used: edgemesh when the node has Services, the metaserver's")
    print("   Starlette at kubectl's first request, asyncua with an OPC-UA device)")
    subprocess.run([sys.executable, "-c", code, *mods], cwd=ROOT, check=False)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--cpu-seconds", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=10.0, help="seconds to let a stage settle before measuring")
    args = ap.parse_args()
    why = skip_reason()
    pods_ok = why is None
    if why:
        print(f"no pods in this run: {why}")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for i in range(args.runs):
        for mode in MODES:
            print(f"run {i + 1}/{args.runs}: {mode} ...", flush=True)
            r = await run_mode(mode, args, pods_ok)
            runs[mode].append(r)
            report(r)

    def med(mode: str, stage: str, which: int) -> float:
        return statistics.median(total(r["stages"][stage])[which] for r in runs[mode] if stage in r["stages"])

    print("\n== summary" + (f" (median of {args.runs} runs, min..max)" if args.runs > 1 else ""))
    for stage in [s for s in (*STAGES, "5 devices") if all(s in r["stages"] for r in runs["all-in-one"] + runs["processes"])]:
        a = [total(r["stages"][stage]) for r in runs["all-in-one"]]
        p = [total(r["stages"][stage]) for r in runs["processes"]]
        print(f"   {stage:<22} all-in-one RSS {spread([x[0] for x in a])} MB, PSS {spread([x[1] for x in a])} MB")
        print(f"   {'':<22} processes  RSS {spread([x[0] for x in p])} MB, PSS {spread([x[1] for x in p])} MB")
        print(f"   {'':<22} all-in-one / processes RSS {med('all-in-one', stage, 0) / med('processes', stage, 0):.2f}")
    for mode in MODES:
        print(f"   {mode:<11} start to Ready {spread([r['start_s'] for r in runs[mode]])} s; idle CPU {spread([r['idle_cpu_pct'] for r in runs[mode]])}% of a core")
    aio, pps = med("all-in-one", "bare", 0), med("processes", "bare", 0)
    print(f"   vs KubeEdge's {KUBEEDGE_IDLE_MB:.0f} MB idle: all-in-one {aio / KUBEEDGE_IDLE_MB:.2f}x, processes {pps / KUBEEDGE_IDLE_MB:.2f}x")
    import_breakdown()
    cpu = statistics.median(r["idle_cpu_pct"] for r in runs["all-in-one"])
    start = statistics.median(r["start_s"] for r in runs["all-in-one"])
    print(f"RESULT aio_rss_mb={aio:.1f} aio_pss_mb={med('all-in-one', 'bare', 1):.1f} pps_rss_mb={pps:.1f} idle_cpu_pct={cpu:.2f} start_s={start:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
