"""Pods on a lab of real processes (a private containerd per node): offline autonomy
(a cut leaf link), an offline reboot, and kill -9 of edged while pods start."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from edgebus import names
from edgebus.cri import CriClient, api
from edgebus.edgedclient import EdgedClient
from edgebus.envelope import Envelope
from edgebus.errors import NotFound
from edgebus.objects import PODS
from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import eventually

from .conftest import BOTH_MODES, RunningLab, restart_process, start_lab, stop_lab

pytestmark = pytest.mark.e2e

BUSYBOX = "docker.io/library/busybox:edgebus"
NODE = "edge-1"


@pytest.fixture(autouse=True)
def _needs_containerd() -> None:
    why = skip_reason()
    if why:
        pytest.skip(why)


def pod(name: str, command: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": BUSYBOX, "command": command or ["sleep", "3600"]}],
            **spec,
        },
    }


def cri_of(rl: RunningLab) -> CriClient:
    return CriClient(rl.lab.plan.node_containerd(NODE).address)


async def cloud_status(rl: RunningLab, name: str) -> dict[str, Any]:
    try:
        return dict((await rl.store.get(PODS, "default", name)).get("status") or {})
    except NotFound:
        return {}


async def running_in_cloud(rl: RunningLab, name: str, min_restarts: int = 0) -> bool:
    st = await cloud_status(rl, name)
    cs = (st.get("containerStatuses") or [{}])[0]
    return st.get("phase") == "Running" and "running" in (cs.get("state") or {}) and cs.get("restartCount", 0) >= min_restarts


async def running_on_edge(cri: CriClient, name: str) -> list[api.Container]:
    cs = await cri.list_containers({"io.edgebus.node": NODE, "io.kubernetes.pod.name": name})
    return [c for c in cs if c.state == api.CONTAINER_RUNNING]


async def link(rl: RunningLab) -> str:
    env = Envelope.new(source="test", operation="query", content={})
    return str((await rl.edge.call(names.edgehub_subject(NODE, "state"), env)).content["link"])


async def cut(rl: RunningLab) -> None:
    assert rl.proxy is not None
    rl.proxy.cut()

    async def down() -> bool:
        return await link(rl) == "down"

    await eventually(down, timeout=15, msg="edgehub sees the cloud link down")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@BOTH_MODES
async def test_offline_autonomy(tmp_path: Path, edge_mode: str) -> None:
    rl = await start_lab(tmp_path, proxy=True, devices=False, all_in_one=edge_mode == "all-in-one")
    cri = cri_of(rl)
    try:
        await rl.store.create(PODS, pod("survivor"))
        await eventually(lambda: running_in_cloud(rl, "survivor"), timeout=30, msg="survivor Running in the cloud")
        await cut(rl)

        # 1. offline, the container's process is killed: edged restarts it (restartPolicy Always)
        [c] = await running_on_edge(cri, "survivor")
        pid = await cri.container_pid(c.id)
        assert pid > 0
        os.kill(pid, signal.SIGKILL)

        async def restarted() -> bool:
            now = await running_on_edge(cri, "survivor")
            return len(now) == 1 and now[0].id != c.id and now[0].metadata.attempt == 1

        await eventually(restarted, timeout=20, msg="container restarted while offline")
        offline_status = await cloud_status(rl, "survivor")
        assert offline_status["containerStatuses"][0]["restartCount"] == 0, "the cloud cannot know yet"

        # 2. a change made in the cloud while the node is offline: a new pod for it
        await rl.store.create(PODS, pod("late"))
        await asyncio.sleep(1.5)
        assert await running_on_edge(cri, "late") == [], "cannot arrive while the link is cut"

        # 3. heal: the status made offline reaches the cloud, the change reaches the node
        healed = time.monotonic()
        assert rl.proxy is not None
        rl.proxy.heal()
        await eventually(lambda: running_in_cloud(rl, "survivor", min_restarts=1), timeout=30, msg="offline restart visible in the cloud")
        st = await cloud_status(rl, "survivor")
        assert st["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
        await eventually(lambda: running_in_cloud(rl, "late"), timeout=30, msg="pod created offline runs after heal")
        print(f"\nheal -> offline status and new pod in place: {time.monotonic() - healed:.2f}s")
    finally:
        await cri.close()
        await stop_lab(rl)


@BOTH_MODES
async def test_offline_reboot(tmp_path: Path, edge_mode: str) -> None:
    rl = await start_lab(tmp_path, proxy=True, devices=False, all_in_one=edge_mode == "all-in-one")
    try:
        await offline_reboot(rl)
    finally:
        await stop_lab(rl)


async def offline_reboot(rl: RunningLab) -> None:
    """The scenario (also run by the memory-limit test): two pods, the link cut, the node
    powered off and on again while still offline."""
    cri = cri_of(rl)
    try:
        for n in ("web", "worker"):
            await rl.store.create(PODS, pod(n))
        for n in ("web", "worker"):
            await eventually(lambda n=n: running_in_cloud(rl, n), timeout=30, msg=f"{n} Running")
        pids = [await cri.container_pid(c.id) for n in ("web", "worker") for c in await running_on_edge(cri, n)]
        await cut(rl)

        # power off: every edge process and every container of the node stops
        await rl.lab.stop_group(NODE)
        await cri.close()
        assert not any(alive(p) for p in pids), "every container was stopped"
        assert all(p.popen is None or p.popen.poll() is not None for p in rl.lab.procs.values() if p.spec.group == NODE)

        # power on with the cloud still unreachable: the pods come back from LMDB
        t0 = time.monotonic()
        await rl.lab.start_group(NODE)
        cri = cri_of(rl)

        async def back() -> bool:
            return all([len(await running_on_edge(cri, n)) == 1 for n in ("web", "worker")])

        await eventually(back, timeout=40, msg="pods running again after the offline reboot")
        print(f"\noffline boot -> pods running: {time.monotonic() - t0:.2f}s")
        assert rl.proxy is not None and rl.proxy.mode == "cut"
        state = await EdgedClient(rl.edge, NODE).state()
        assert state["runtime"]["ok"] and {p["name"] for p in state["pods"]} == {"web", "worker"}
        boxes = await cri.list_pod_sandbox({"io.edgebus.node": NODE})
        assert Counter(b.labels["io.kubernetes.pod.name"] for b in boxes if b.state == api.SANDBOX_READY) == {"web": 1, "worker": 1}

        rl.proxy.heal()
        for n in ("web", "worker"):
            await eventually(lambda n=n: running_in_cloud(rl, n, min_restarts=1), timeout=30, msg=f"{n} status after heal")
    finally:
        await cri.close()


@BOTH_MODES
async def test_kill9_edged_while_ten_pods_start(tmp_path: Path, edge_mode: str) -> None:
    rl = await start_lab(tmp_path, proxy=False, devices=False, all_in_one=edge_mode == "all-in-one")
    cri = cri_of(rl)
    try:
        names_ = [f"p{i:02d}" for i in range(10)]
        await asyncio.gather(*(rl.store.create(PODS, pod(n)) for n in names_))

        async def some_started() -> bool:
            boxes = await cri.list_pod_sandbox({"io.edgebus.node": NODE})
            return len(boxes) >= 4

        await eventually(some_started, timeout=20, interval=0.01, msg="pods starting")
        boxes = await cri.list_pod_sandbox({"io.edgebus.node": NODE})
        containers = await cri.list_containers({"io.edgebus.node": NODE})
        await restart_process(rl.lab, rl.lab.plan.process_of(NODE, "edged"), kill=True)
        print(f"\nkilled edged with {len(boxes)} sandboxes and {len(containers)} containers created")

        async def all_running() -> bool:
            return all([await running_in_cloud(rl, n) for n in names_])

        await eventually(all_running, timeout=60, msg="10 pods Running")
        await asyncio.sleep(2)  # let a duplicate, if any, appear
        boxes = await cri.list_pod_sandbox({"io.edgebus.node": NODE})
        containers = await cri.list_containers({"io.edgebus.node": NODE})
        per_pod = Counter(b.labels["io.kubernetes.pod.name"] for b in boxes)
        assert per_pod == {n: 1 for n in names_}, f"exactly one sandbox per pod: {per_pod}"
        running = [c for c in containers if c.state == api.CONTAINER_RUNNING]
        assert Counter(c.labels["io.kubernetes.pod.name"] for c in running) == {n: 1 for n in names_}, "exactly one running container per pod"
        assert all(b.state == api.SANDBOX_READY for b in boxes)
        # kill -9 cancels edged's in-flight CRI calls: containerd then fails a start it had
        # begun, and edged starts the container anew (restartCount 1). Such a leftover never
        # ran: no container ever ran twice.
        for c in containers:
            if c.state != api.CONTAINER_RUNNING:
                st = await cri.container_status(c.id)
                assert st.started_at == 0, f"{c.labels['io.kubernetes.pod.name']}: a second copy ran"
    finally:
        await cri.close()
        await stop_lab(rl)
