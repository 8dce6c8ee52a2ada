"""Autonomy-aware node lifecycle on labs of real processes with real containerd pods.

* A node partitioned for longer than the grace period and every toleration: its pods keep
  running on the node, the cloud marks them not Ready but neither deletes nor re-creates
  them; after the heal nothing restarted (same containers, restartCount unchanged). Only a
  pod that opted into failover (``tolerationSeconds``) is evicted. Events the node recorded
  while offline reach the cloud after the heal: ``kubectl describe`` and ``kubectl get
  events -w`` (1.27 and 1.33) show them.
* The whole cloud (NATS included) frozen with SIGSTOP for longer than a heartbeat write
  interval and shorter than the grace period: no node is ever reported NotReady.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgebus.cri import CriClient, api
from edgebus.errors import NotFound
from edgebus.objects import EVENTS, NODES, PODS
from edgebus.objectstore import BOOKMARK
from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab
from .kubectl import KUBECTL, Kubectl, Watch, versioned_kubectls

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

BUSYBOX = "docker.io/library/busybox:edgebus"
NODE = "edge-1"
GRACE = 4.0
FAILOVER_SECONDS = 3
PARTITION = 20.0  # > grace + every toleration here (4 s + 3 s), with a wide margin


@pytest.fixture(autouse=True)
def _needs_containerd() -> None:
    why = skip_reason()
    if why:
        pytest.skip(why)


def pod(name: str, command: str = "sleep 3600", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", command]}], **spec},
    }


async def cloud_pod(rl: RunningLab, name: str) -> dict[str, Any] | None:
    try:
        return await rl.store.get(PODS, "default", name)
    except NotFound:
        return None


def cond(obj: dict[str, Any] | None, typ: str) -> str:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == typ:
            return str(c.get("status"))
    return ""


async def running(rl: RunningLab, name: str) -> bool:
    p = await cloud_pod(rl, name)
    return bool(p) and (p.get("status") or {}).get("phase") == "Running" and cond(p, "Ready") == "True"  # type: ignore[union-attr]


async def edge_containers(cri: CriClient, name: str) -> list[api.Container]:
    cs = await cri.list_containers({"io.edgebus.node": NODE, "io.kubernetes.pod.name": name})
    return [c for c in cs if c.state == api.CONTAINER_RUNNING]


async def node_status(rl: RunningLab) -> str:
    return cond(await rl.store.get(NODES, None, NODE), "Ready")


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[RunningLab]:
    rl = await start_lab(tmp_path, proxy=True, grace=GRACE, devices=False)
    try:
        yield rl
    finally:
        await stop_lab(rl)


async def test_a_long_partition_changes_nothing_on_the_node(proxied: RunningLab, tmp_path: Path) -> None:
    rl = proxied
    assert rl.proxy is not None
    cri = CriClient(rl.lab.plan.node_containerd(NODE).address)
    failover = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": FAILOVER_SECONDS}]
    await rl.store.create(PODS, pod("keeper"))
    await rl.store.create(PODS, pod("failover", tolerations=failover))
    await rl.store.create(PODS, pod("crasher", command="sleep 3600"))
    for name in ("keeper", "failover", "crasher"):
        await eventually(lambda name=name: running(rl, name), timeout=60, msg=f"{name} Running and Ready")
    keeper = await cloud_pod(rl, "keeper")
    assert keeper is not None
    [kc] = await edge_containers(cri, "keeper")
    [fc] = await edge_containers(cri, "failover")
    kubectls = [Kubectl(tmp_path / f"k{v}", "cloud", rl.lab.plan.apiserver_url, b, ca_file=rl.lab.plan.ca_file, token=rl.lab.plan.admin_token()) for v, b in versioned_kubectls().items() if v in ("1.27", "1.33")] if KUBECTL else []
    cols = "custom-columns=REASON:.reason,COUNT:.count,SOURCE:.source.component,MESSAGE:.message"
    # no request timeout (the helper's 20 s would end these watches during the partition)
    watches = [Watch(k.argv("get", "events", "-w", "--request-timeout", "0", "--field-selector", "involvedObject.name=crasher", "-o", cols)) for k in kubectls]

    # -- partition, longer than the grace period and every toleration ------------------------
    rl.proxy.cut()
    t0 = time.monotonic()
    await eventually(lambda: _is(node_status(rl), "Unknown"), timeout=GRACE + 20, msg="edge-1 NotReady in the cloud")
    node = await rl.store.get(NODES, None, NODE)
    assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} >= {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")}
    await eventually(lambda: _ready_false(rl, "keeper"), timeout=15, msg="keeper not Ready in the cloud")
    # offline, the crasher's container dies: the node restarts it and records events meanwhile
    [cc] = await edge_containers(cri, "crasher")
    os.kill(await cri.container_pid(cc.id), signal.SIGKILL)

    async def crasher_restarted() -> bool:
        now = await edge_containers(cri, "crasher")
        return len(now) == 1 and now[0].id != cc.id

    await eventually(crasher_restarted, timeout=30, msg="crasher restarted offline")
    remaining = PARTITION - (time.monotonic() - t0)
    if remaining > 0:
        await asyncio.sleep(remaining)
    # the cloud neither deleted nor replaced the keeper; the pod that opted in is being evicted
    k = await cloud_pod(rl, "keeper")
    assert k is not None and k["metadata"]["uid"] == keeper["metadata"]["uid"] and not k["metadata"].get("deletionTimestamp")
    f = await cloud_pod(rl, "failover")
    assert f is None or f["metadata"].get("deletionTimestamp"), "the opted-in pod is evicted after its tolerationSeconds"
    # ... and on the node everything kept running, nothing restarted
    assert [c.id for c in await edge_containers(cri, "keeper")] == [kc.id]
    assert [c.id for c in await edge_containers(cri, "failover")] == [fc.id], "the node cannot know yet"

    # -- heal ----------------------------------------------------------------------------------
    rl.proxy.heal()
    await eventually(lambda: _is(node_status(rl), "True"), timeout=30, msg="edge-1 Ready again")
    await eventually(lambda: running(rl, "keeper"), timeout=30, msg="keeper Ready again, from its node's word")
    node = await rl.store.get(NODES, None, NODE)
    assert not [t for t in (node.get("spec") or {}).get("taints") or [] if t["key"].startswith("node.kubernetes.io/")]
    k = await cloud_pod(rl, "keeper")
    assert k is not None and k["metadata"]["uid"] == keeper["metadata"]["uid"], "not re-created"
    assert k["status"]["containerStatuses"][0]["restartCount"] == 0, "restartCount unchanged"
    assert [c.id for c in await edge_containers(cri, "keeper")] == [kc.id], "the same container, never restarted"
    await eventually(lambda: _gone(rl, "failover"), timeout=30, msg="the evicted pod's node stops it and confirms")
    assert await edge_containers(cri, "failover") == []

    # -- events made offline are in the cloud now -----------------------------------------------
    async def offline_events() -> list[dict[str, Any]] | None:
        evs, _ = await rl.store.list(EVENTS, "default", field_selector="involvedObject.name=crasher,reason=Started")
        return evs if evs and evs[0]["count"] >= 2 else None

    ev = (await eventually(offline_events, timeout=30, msg="the offline Started event counted"))[0]
    assert ev["source"] == {"component": "edged", "host": NODE}
    for kubectl, w in zip(kubectls, watches, strict=True):
        try:
            line = await asyncio.to_thread(_counted_again, w, "Started")
            assert line.split()[2] == "edged" and "Started container main" in line
        finally:
            w.close()
        out = await asyncio.to_thread(kubectl.out, "describe", "pod", "crasher")
        events = out.split("Events:", 1)[1]
        assert "Started" in events and "edged" in events and "(x2 over" in events, events
    await cri.close()


def _counted_again(w: Watch, reason: str) -> str:
    """The watch line of ``reason`` once its count reached 2 (the offline occurrence arrived)."""
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        line = w.next(timeout=1)
        if line is None:
            continue
        lines.append(line)
        f = line.split()
        if len(f) >= 2 and f[0] == reason and f[1].isdigit() and int(f[1]) >= 2:
            return line
    err = w.proc.stderr.read() if w.proc.poll() is not None and w.proc.stderr else ""
    raise AssertionError(f"no {reason} line with count >= 2 streamed: {lines} {err}")


async def _is(aw: Any, want: str) -> bool:
    return (await aw) == want


async def _ready_false(rl: RunningLab, name: str) -> bool:
    p = await cloud_pod(rl, name)
    return cond(p, "Ready") == "False" and cond(p, "ContainersReady") == "True"


async def _gone(rl: RunningLab, name: str) -> bool:
    return await cloud_pod(rl, name) is None


# -- the whole cloud frozen ---------------------------------------------------------------------

PAUSE = 33.0
LAB_GRACE = 40.0  # the lab's defaults: grace 40 s, heartbeats every 10 s


async def test_a_frozen_cloud_never_reports_a_node_not_ready(tmp_path: Path) -> None:
    rl = await start_lab(tmp_path, proxy=False, grace=LAB_GRACE, heartbeat=10.0, devices=False, nodes=2)
    seen: list[tuple[str, str]] = []
    stop = asyncio.Event()

    async def watch_nodes() -> None:
        async with aclosing(rl.store.watch([NODES])) as it:
            async for ev in it:
                if ev.type != BOOKMARK:
                    seen.append((ev.object["metadata"]["name"], cond(ev.object, "Ready")))
                if stop.is_set():
                    return

    watcher = asyncio.create_task(watch_nodes())
    try:
        await asyncio.sleep(LAB_GRACE / 4 + 2)  # heartbeats recorded, as in a lab that has run a while
        before = {n["metadata"]["name"]: _ready_cond(n) for n in (await rl.store.list(NODES))[0]}
        assert all(c["status"] == "True" for c in before.values())
        procs = [p for name, p in rl.lab.procs.items() if p.spec.group == "cloud" and p.popen is not None]
        assert {p.spec.name for p in procs} >= {"cloud/nats", "cloud/cloudhub", "cloud/apiserver", "cloud/scheduler"}
        for p in procs:
            os.kill(p.popen.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:
            await asyncio.sleep(PAUSE)
        finally:
            for p in procs:
                os.kill(p.popen.pid, signal.SIGCONT)  # type: ignore[union-attr]
        # a whole grace period after the cloud is back: the outboxes drain, nothing flaps
        await asyncio.sleep(LAB_GRACE + 5)
        after = {n["metadata"]["name"]: _ready_cond(n) for n in (await rl.store.list(NODES))[0]}
        for name, c in after.items():
            assert c["status"] == "True", f"{name}: {c}"
            assert c["lastTransitionTime"] == before[name]["lastTransitionTime"], f"{name} changed Ready meanwhile: {c}"
        assert {s for _, s in seen} == {"True"}, f"a node was reported {seen}"
        evs, _ = await rl.store.list(EVENTS, field_selector="reason=NodeNotReady")
        assert evs == []
        async with httpx.AsyncClient(timeout=5) as client:
            metrics = (await client.get(f"http://{rl.lab.plan.host}:{rl.lab.plan.cloud_ops_port('cloudhub')}/metrics")).text
        assert 'edgebus_node_lifecycle_transitions_total{to="NotReady"}' not in metrics
        assert 'edgebus_node_lifecycle_holds_total{reason="stalled"}' in metrics or 'edgebus_node_lifecycle_holds_total{reason="nats"}' in metrics, "the lifecycle noticed the cloud was away"
    finally:
        stop.set()
        watcher.cancel()
        await stop_lab(rl)


def _ready_cond(node: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
