"""A Deployment's rolling update while one of its edge nodes is offline, on a lab of real
processes with real containerd pods.

Two nodes, four replicas (two per node: each revision spread over the nodes), ``maxSurge``
1 and ``maxUnavailable`` 1. edge-1's link is cut until it is NotReady and its pods are not
Ready in the cloud; then the template changes (``kubectl set env``). The rollout proceeds on edge-2 without ever
having more than ``maxUnavailable`` of the reachable share (2 pods) unavailable or more
than ``maxSurge`` extra pods there, while edge-1's old pods are neither deleted nor replaced
(they keep running on the node) and the Deployment does not report itself complete. After
the heal edge-1's pods are replaced by pods of the new template on edge-1, and the
Deployment completes as Kubernetes reports it (``observedGeneration``, counts, conditions,
the old ReplicaSet at 0).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgebus.cri import CriClient, api
from edgebus.objects import DEPLOYMENTS, NODES, PODS, REPLICASETS
from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab
from .kubectl import KUBECTL, Kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")]

BUSYBOX = "docker.io/library/busybox:edgebus"
OFFLINE, ONLINE = "edge-1", "edge-2"
REPLICAS, SURGE, UNAVAILABLE = 4, 1, 1
GRACE = 4.0
HASH = "pod-template-hash"


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[RunningLab]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    rl = await start_lab(tmp_path, proxy=True, nodes=2, grace=GRACE, devices=False)
    try:
        yield rl
    finally:
        await stop_lab(rl)


def deployment(version: str) -> dict[str, Any]:
    spread = {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "roll"}},
        "matchLabelKeys": [HASH],  # each revision spread over the nodes
        "nodeTaintsPolicy": "Honor",  # over the nodes it may go to
    }
    container = {"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"], "env": [{"name": "VERSION", "value": version}]}
    return {
        "metadata": {"name": "roll", "namespace": "default"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "roll"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": SURGE, "maxUnavailable": UNAVAILABLE}},
            "template": {
                "metadata": {"labels": {"app": "roll"}},
                "spec": {"terminationGracePeriodSeconds": 1, "topologySpreadConstraints": [spread], "containers": [container]},
            },
        },
    }


def version_of(pod: dict[str, Any]) -> str:
    env = pod["spec"]["containers"][0].get("env") or []
    return next(e["value"] for e in env if e["name"] == "VERSION")


def ready(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or [])


def cond(obj: dict[str, Any], typ: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == typ), {})


async def pods(rl: RunningLab) -> list[dict[str, Any]]:
    items, _ = await rl.store.list(PODS, "default", label_selector="app=roll")
    return items


def live(ps: list[dict[str, Any]], node: str, version: str | None = None) -> list[dict[str, Any]]:
    return [p for p in ps if p["spec"].get("nodeName") == node and not p["metadata"].get("deletionTimestamp") and (version is None or version_of(p) == version)]


async def running_on(rl: RunningLab, node: str) -> set[str]:
    """Pod names with a running container in ``node``'s own containerd."""
    cri = CriClient(rl.lab.plan.node_containerd(node).address)
    try:
        cs = await cri.list_containers({"io.edgebus.node": node})
    finally:
        await cri.close()
    return {c.labels.get("io.kubernetes.pod.name", "") for c in cs if c.state == api.CONTAINER_RUNNING and c.labels.get("io.kubernetes.pod.name", "").startswith("roll-")}


def complete(d: dict[str, Any]) -> bool:
    st = d.get("status") or {}
    return (
        st.get("observedGeneration") == d["metadata"]["generation"]
        and st.get("replicas") == st.get("updatedReplicas") == st.get("availableReplicas") == st.get("readyReplicas") == REPLICAS
        and not st.get("unavailableReplicas")
        and cond(d, "Progressing").get("reason") == "NewReplicaSetAvailable"
        and cond(d, "Available").get("status") == "True"
    )


async def test_rolling_update_with_an_edge_node_offline(lab: RunningLab, tmp_path: Path) -> None:
    rl = lab
    plan = rl.lab.plan
    k = Kubectl(tmp_path / "kubectl", "cloud", plan.apiserver_url, ca_file=plan.ca_file, token=plan.admin_token())
    assert rl.proxy is not None
    t0 = time.monotonic()
    await rl.store.create(DEPLOYMENTS, deployment("1"))

    async def rolled_out(version: str) -> bool:
        d = await rl.store.get(DEPLOYMENTS, "default", "roll")
        ps = await pods(rl)
        per_node = [len([p for p in live(ps, n, version) if ready(p)]) for n in (OFFLINE, ONLINE)]
        return complete(d) and per_node == [REPLICAS // 2, REPLICAS // 2] and len([p for p in ps if not p["metadata"].get("deletionTimestamp")]) == REPLICAS

    await eventually(lambda: rolled_out("1"), timeout=90, msg="v1 rolled out, two pods per node")
    held = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live(await pods(rl), OFFLINE)}
    assert set(held) <= await running_on(rl, OFFLINE)

    # -- edge-1 offline: NotReady, its pods not Ready in the cloud ----------------------------
    rl.proxy.cut()

    async def offline() -> bool:
        node = await rl.store.get(NODES, None, OFFLINE)
        return not ready(node) and not any(ready(p) for p in live(await pods(rl), OFFLINE))

    await eventually(offline, timeout=GRACE + 30, msg=f"{OFFLINE} NotReady and its pods not Ready")

    # every observation during the outage, from the template change on
    reachable = REPLICAS - len(held)
    seen: list[tuple[int, int]] = []  # (available, live pods) on the online node
    touched: set[str] = set()  # offline pods deleted or replaced in the cloud
    stop = asyncio.Event()

    async def observe() -> None:
        while not stop.is_set():
            try:
                ps = await pods(rl)
            except Exception:  # a slow answer on a loaded machine: the next look counts
                await asyncio.sleep(0.1)
                continue
            on = live(ps, ONLINE)
            seen.append((len([p for p in on if ready(p)]), len(on)))
            now = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live(ps, OFFLINE)}
            touched.update(n for n, uid in held.items() if now.get(n) != uid)
            touched.update(n for n in now if n not in held)  # nothing new is placed there
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(observe())
    try:
        await asyncio.to_thread(k.run, "set", "env", "deployment/roll", "VERSION=2")

        async def online_share_done() -> bool:
            ps = await pods(rl)
            on = live(ps, ONLINE)
            return len(on) == reachable and all(ready(p) and version_of(p) == "2" for p in on)

        await eventually(online_share_done, timeout=60, msg=f"v2 on {ONLINE}")
        # the Deployment's status has caught up with the new generation: not complete
        d = await eventually(lambda: _status_caught_up(rl), timeout=30, msg="Deployment status of the new generation")
    finally:
        stop.set()
        await watcher
    assert seen, "observed during the outage"
    assert min(a for a, _ in seen) >= reachable - UNAVAILABLE, f"more than maxUnavailable of the reachable pods unavailable: {seen}"
    assert max(n for _, n in seen) <= reachable + SURGE, f"more than maxSurge extra pods: {seen}"
    assert not touched, f"pods of the offline node deleted or replaced: {touched}"
    assert set(held) <= await running_on(rl, OFFLINE), "the offline node keeps running its pods"
    st = d["status"]
    assert st["updatedReplicas"] == reachable and st["replicas"] == REPLICAS and not complete(d)
    assert cond(d, "Progressing").get("status") == "True" and cond(d, "Progressing").get("reason") == "ReplicaSetUpdated"

    # -- heal: edge-1's pods are replaced by the new template, the rollout completes ----------
    rl.proxy.heal()
    await eventually(lambda: rolled_out("2"), timeout=90, msg="v2 rolled out on both nodes")
    d = await rl.store.get(DEPLOYMENTS, "default", "roll")
    new_hash = live(await pods(rl), OFFLINE)[0]["metadata"]["labels"][HASH]
    rss, _ = await rl.store.list(REPLICASETS, "default", label_selector="app=roll")
    old = [r for r in rss if r["metadata"]["labels"][HASH] != new_hash]
    assert len(old) == 1 and old[0]["spec"]["replicas"] == 0
    await eventually(lambda: _old_rs_empty(rl, old[0]["metadata"]["name"]), timeout=30, msg="old ReplicaSet at 0")
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"

    async def old_pods_stopped() -> bool:
        names = await running_on(rl, OFFLINE)
        v2 = {p["metadata"]["name"] for p in live(await pods(rl), OFFLINE, "2")}
        return names == v2 and not (names & set(held))

    await eventually(old_pods_stopped, timeout=30, msg=f"only v2 pods run on {OFFLINE}")
    print(f"rollout with {OFFLINE} offline: {time.monotonic() - t0:.1f} s, {len(seen)} observations")


async def _status_caught_up(rl: RunningLab) -> dict[str, Any] | None:
    d = await rl.store.get(DEPLOYMENTS, "default", "roll")
    st = d.get("status") or {}
    # the scaled-down old pod of the online node leaves the ReplicaSets' counts a moment
    # after it left the pod list
    if st.get("observedGeneration") != d["metadata"]["generation"] or st.get("updatedReplicas") != REPLICAS // 2 or st.get("replicas") != REPLICAS:
        return None
    return d


async def _old_rs_empty(rl: RunningLab, name: str) -> bool:
    rs = await rl.store.get(REPLICASETS, "default", name)
    return int((rs.get("status") or {}).get("replicas") or 0) == 0
