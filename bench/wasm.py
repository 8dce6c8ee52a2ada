"""Wasm pods vs busybox containers: start latency and memory per pod.

One in-process mesh (a real hub and leaf, cloudhub, edgecontroller, apiserver,
metamanager, edgehub and edged for ``edge-1``, as the integration tests use) with a private
containerd, so both runtimes serve the same node. For N = 1, 10, 50 pods of each kind
(the same workload: a process that sleeps and prints now and then — the test module's
``sleep`` mode, and ``sh -c 'while true; do echo tick; sleep 1; done'`` in busybox):

* **API create -> Running**: from each create to the cloud's store showing the pod
  Running (all N created at once), p50;
* **runtime start alone**: sandbox + create + start through the runtime's own calls, no
  edgebus around it - the Wasm runtime until the module's first output line is in its log,
  containerd over CRI until ``StartContainer`` returns;
* **memory per pod**: the proportional set size (PSS, shared pages split among their
  users) of what each pod adds to the node - the Wasm worker process; the runc shim with
  the pause and busybox processes - summed and divided by N.

Prints each figure and the ratio Wasm/container; the last line is
``RESULT wasm_start_p50_ms=... container_start_p50_ms=... wasm_mb_per_pod=... container_mb_per_pod=...``
(the N=10 run). Without root/containerd the container half is skipped (``nan``).

    .venv/bin/python bench/wasm.py [--sizes 1,10,50]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import wasmtime  # noqa: E402

from edgebus.cri import CriClient, api, remove_all  # noqa: E402
from edgebus.images import BUSYBOX_IMAGE  # noqa: E402
from edgebus.objects import PODS  # noqa: E402
from edgebus.objectstore import DELETED, ObjectStore  # noqa: E402
from edgebus.testing.containerd import skip_reason, start_containerd, stop_containerd  # noqa: E402
from edgebus.testing.servers import Cluster, start_hub  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402
from edgebus.wasm.modules import write_archive  # noqa: E402
from edgebus.wasm.runtime import WasmRuntime  # noqa: E402
from tests.integration.podmesh import NODE, PodMesh, start_mesh, stop_mesh  # noqa: E402

WAT = ROOT / "tests" / "data" / "wasm" / "tool.wat"
WASM_IMAGE = "bench.local/tool:1"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))] if s else float("nan")


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            out += [int(x) for x in (t / "children").read_text().split()]
    except OSError:
        pass
    return out


def ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def wasm_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "runtimeClassName": "wasm", "terminationGracePeriodSeconds": 0, "containers": [{"name": "main", "image": WASM_IMAGE, "args": ["sleep"]}]},
    }


def container_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": BUSYBOX_IMAGE, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", "while true; do echo tick; sleep 1; done"]}],
        },
    }


class Watch:
    """The first moment the cloud shows each pod Running, and when it is gone."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.running: dict[str, float] = {}
        self.deleted: set[str] = set()

    async def run(self) -> None:
        rev = await self.store.kv.last_revision()
        async with aclosing(self.store.watch([PODS], "default", from_revision=rev)) as it:
            async for ev in it:
                name = ev.object["metadata"]["name"]
                if ev.type == DELETED:
                    self.deleted.add(name)
                elif (ev.object.get("status") or {}).get("phase") == "Running":
                    self.running.setdefault(name, time.monotonic())


async def api_round(mesh: PodMesh, watch: Watch, kind: str, n: int, make: Any) -> tuple[list[float], float]:
    """Create n pods at once; (create -> Running per pod, PSS MB per pod)."""
    names = [f"{kind}-{n}-{i}" for i in range(n)]
    sent: dict[str, float] = {}

    async def create(name: str) -> None:
        sent[name] = time.monotonic()
        await mesh.store.create(PODS, make(name))

    await asyncio.gather(*(create(x) for x in names))
    await eventually(lambda: all(x in watch.running for x in names), timeout=120, interval=0.01, msg=f"{n} {kind} pods Running")
    lat = [watch.running[x] - sent[x] for x in names]
    await asyncio.sleep(2)  # steady state
    mb = await pod_memory(mesh, names, kind) / n
    for x in names:
        await mesh.delete_pod(x)
    await eventually(lambda: all(x in watch.deleted for x in names), timeout=120, msg="pods gone")
    return lat, mb


async def pod_memory(mesh: PodMesh, names: list[str], kind: str) -> float:
    edged_cri = mesh.services["edged"].ctx.cri  # the runtimes edged drives
    total = 0
    seen: set[int] = set()
    for name in names:
        for c in await edged_cri.list_containers({"io.kubernetes.pod.name": name}):
            pid = await edged_cri.container_pid(c.id)
            if not pid:
                continue
            if kind == "wasm":
                pids = [pid]
            else:
                shim = ppid(pid)
                pids = [shim, *children(shim)]
            for p in pids:
                if p not in seen:
                    seen.add(p)
                    total += pss_kb(p)
    return total / 1024


async def wasm_alone(root: Path, n: int) -> list[float]:
    rt = WasmRuntime(root / "alone")
    rt.import_archive(root / "tool.tar")
    out = []
    for i in range(n):
        sbc = api.PodSandboxConfig(metadata=api.PodSandboxMetadata(name=f"a{i}", namespace="bench", uid=f"alone-{i}", attempt=0), log_directory=str(root / "alone-logs" / str(i)))
        cc = api.ContainerConfig(metadata=api.ContainerMetadata(name="main"), image=api.ImageSpec(image=WASM_IMAGE), args=["sleep"], log_path="main/0.log")
        t = time.monotonic()
        sid = await rt.run_pod_sandbox(sbc)
        cid = await rt.create_container(sid, cc, sbc)
        await rt.start_container(cid)
        log = root / "alone-logs" / str(i) / "main" / "0.log"
        await eventually(lambda log=log: log.exists() and b"tick" in log.read_bytes(), timeout=30, interval=0.002, msg="first output")
        out.append(time.monotonic() - t)
        await rt.stop_pod_sandbox(sid)
        await rt.remove_pod_sandbox(sid)
    return out


async def containerd_alone(address: str, root: Path, n: int) -> list[float]:
    cri = CriClient(address)
    labels = {"io.edgebus.node": "bench-alone"}
    out = []
    try:
        for i in range(n):
            sb = api.PodSandboxConfig(
                metadata=api.PodSandboxMetadata(name=f"a{i}", namespace="bench", uid=f"alone-{i}", attempt=0),
                log_directory=str(root / "ctd-logs" / str(i)),
                labels=labels,
                linux=api.LinuxPodSandboxConfig(security_context=api.LinuxSandboxSecurityContext(namespace_options=api.NamespaceOption(network=api.NODE))),
            )
            t = time.monotonic()
            sid = await cri.run_pod_sandbox(sb)
            cc = api.ContainerConfig(metadata=api.ContainerMetadata(name="main"), image=api.ImageSpec(image=BUSYBOX_IMAGE), command=["sleep", "3600"], log_path="main/0.log", labels=labels)
            cid = await cri.create_container(sid, cc, sb)
            await cri.start_container(cid)
            out.append(time.monotonic() - t)
        await remove_all(cri, labels)
    finally:
        await cri.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,10,50")
    ap.add_argument("--alone", type=int, default=10, help="runtime-alone starts per runtime")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="edgebus-bench-wasm-"))
    write_archive(tmp / "tool.tar", WASM_IMAGE, bytes(wasmtime.wat2wasm(WAT.read_text())))
    why = skip_reason()
    ctd = None
    if why:
        print(f"containers skipped: {why}")

        class _None:
            address = f"unix://{tmp}/no-containerd.sock"

        ctd = None
        ctd_obj: Any = _None()
    else:
        ctd = start_containerd(tmp / "ctd")
        ctd_obj = ctd
    cluster = Cluster(tmp, start_hub(tmp))
    mesh = await start_mesh(cluster, tmp, ctd_obj, wait_runtime=ctd is not None, preload_images=[str(tmp / "tool.tar")])
    store = mesh.store
    watch = Watch(store)
    task = asyncio.create_task(watch.run())
    results: dict[str, dict[int, tuple[float, float]]] = {"wasm": {}, "container": {}}
    try:
        await eventually(lambda: mesh.services["edged"].ctx.manager.cri.wasm.modules.lookup(WASM_IMAGE) is not None, timeout=30, msg="module preloaded")
        print("runtime start alone (sandbox + create + start):", flush=True)
        wa = await wasm_alone(tmp, args.alone)
        print(f"  wasm (until its first log line)  p50 {pct(wa, 50) * 1000:7.1f} ms   p90 {pct(wa, 90) * 1000:7.1f} ms")
        ca: list[float] = []
        if ctd is not None:
            ca = await containerd_alone(ctd.address, tmp, args.alone)
            print(f"  containerd (StartContainer done) p50 {pct(ca, 50) * 1000:7.1f} ms   p90 {pct(ca, 90) * 1000:7.1f} ms")
            print(f"  ratio wasm/container: {pct(wa, 50) / pct(ca, 50):.2f}")
        # warm-up of each path
        for kind, make in (("wasm", wasm_pod), ("container", container_pod)):
            if kind == "container" and ctd is None:
                continue
            await api_round(mesh, watch, f"warm{kind}", 1, make)
        print("API create -> Running (N created at once), memory per pod (PSS):", flush=True)
        for n in sizes:
            for kind, make in (("wasm", wasm_pod), ("container", container_pod)):
                if kind == "container" and ctd is None:
                    results[kind][n] = (math.nan, math.nan)
                    continue
                lat, mb = await api_round(mesh, watch, kind, n, make)
                results[kind][n] = (pct(lat, 50), mb)
                print(f"  N={n:3d} {kind:9s}  start p50 {pct(lat, 50) * 1000:7.1f} ms  p90 {pct(lat, 90) * 1000:7.1f} ms   {mb:6.1f} MB/pod", flush=True)
            w, c = results["wasm"][n], results["container"][n]
            print(f"  N={n:3d} ratio wasm/container: start {w[0] / c[0]:.2f}   memory {w[1] / c[1]:.2f}")
    finally:
        task.cancel()
        await stop_mesh(mesh)
        cluster.stop()
        if ctd is not None:
            stop_containerd(ctd)
    key = 10 if 10 in results["wasm"] else sizes[0]
    w, c = results["wasm"][key], results["container"][key]
    print(f"RESULT wasm_start_p50_ms={w[0] * 1000:.1f} container_start_p50_ms={c[0] * 1000:.1f} wasm_mb_per_pod={w[1]:.1f} container_mb_per_pod={c[1]:.1f} wasm_alone_p50_ms={pct(wa, 50) * 1000:.1f} container_alone_p50_ms={pct(ca, 50) * 1000 if ca else math.nan:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
