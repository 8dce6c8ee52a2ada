"""The scheduler and the apiserver's pod subresources against a real nats-server, over
real HTTP: binding, FailedScheduling and retries when the cluster changes, eviction with
PodDisruptionBudgets, events in both API versions, and events expiring."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from edgebus.bus import Bus
from edgebus.natsd import free_port
from edgebus.objects import EVENTS, NODES, PODS
from edgebus.objectstore import DELETED, ObjectStore
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually

PODS_URL = "/api/v1/namespaces/default/pods"


@pytest.fixture
async def sched(hub: Any) -> AsyncIterator[Any]:
    s = build_service("scheduler", nats=hub.nats_settings("scheduler"), scheduler={"lease_ttl": 2, "initial_backoff": 0.2, "max_backoff": 1})
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def cloud(hub: Any, bus: Bus, sched: Any) -> AsyncIterator[tuple[httpx.AsyncClient, ObjectStore]]:
    port = free_port()
    api = build_service("apiserver", nats=hub.nats_settings("apiserver"), apiserver={"port": port})
    await api.start()
    store = ObjectStore(bus)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await eventually(lambda: _ok(client, "/readyz"), timeout=10, msg="apiserver ready")
            await eventually(lambda: _synced(sched), timeout=10, msg="scheduler synced")
            yield client, store
    finally:
        await api.stop()


async def seen_by_scheduler(sched: Any, *nodes: str, **fields: Any) -> None:
    """Wait until the scheduler's cache holds ``nodes`` (with ``fields``, e.g. unschedulable=True)."""

    def seen() -> bool:
        cache = sched.ctx.cache.nodes
        def has(info: Any, k: str, v: Any) -> bool:
            return [x.get("key") for x in info.taints] == v if k == "taint_keys" else getattr(info, k) == v

        return all(n in cache and all(has(cache[n], k, v) for k, v in fields.items()) for n in nodes)

    await eventually(seen, timeout=10, msg=f"the scheduler sees {nodes} {fields or ''}")


async def _ok(client: httpx.AsyncClient, path: str) -> bool:
    return (await client.get(path)).status_code == 200


async def _synced(svc: Any) -> bool:
    return bool(svc.ctx.synced)


def node(name: str, *, cpu: str = "2", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": {"allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"}},
    }


def pod(name: str, *, cpu: str | None = None, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": {"containers": [c], **spec}}


async def add_nodes(client: httpx.AsyncClient, *nodes: dict[str, Any]) -> None:
    for n in nodes:
        r = await client.post("/api/v1/nodes", json=n)
        assert r.status_code == 201, r.text
        # allocatable is status: set it through the status subresource, as a node does
        cur = r.json()
        cur["status"] = n["status"]
        r = await client.put(f"/api/v1/nodes/{n['metadata']['name']}/status", json=cur)
        assert r.status_code == 200, r.text


async def bound_to(client: httpx.AsyncClient, name: str) -> str | None:
    r = await client.get(f"{PODS_URL}/{name}")
    return (r.json().get("spec") or {}).get("nodeName") if r.status_code == 200 else None


async def events_of(client: httpx.AsyncClient, name: str) -> list[dict[str, Any]]:
    r = await client.get("/api/v1/namespaces/default/events", params={"fieldSelector": f"involvedObject.name={name},involvedObject.kind=Pod"})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_pod_without_a_node_is_bound_within_a_second(cloud: tuple[httpx.AsyncClient, ObjectStore], sched: Any) -> None:
    client, _ = cloud
    await add_nodes(client, node("edge-1"), node("edge-2"))
    await seen_by_scheduler(sched, "edge-1", "edge-2")
    worst = 0.0
    for i in range(5):
        t0 = time.monotonic()
        assert (await client.post(PODS_URL, json=pod(f"quick-{i}"))).status_code == 201
        await eventually(lambda i=i: bound_to(client, f"quick-{i}"), timeout=5, interval=0.01, msg="bound")
        worst = max(worst, time.monotonic() - t0)
    print(f"\nworst create -> bound: {worst * 1000:.0f} ms")
    assert worst < 1.0
    p = (await client.get(f"{PODS_URL}/quick-0")).json()
    cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["status"] == "True"

    async def scheduled_event() -> dict[str, Any] | None:
        evs = [e for e in await events_of(client, "quick-0") if e["reason"] == "Scheduled"]
        return evs[0] if evs else None

    ev = await eventually(scheduled_event, timeout=5, msg="Scheduled event")
    assert ev["type"] == "Normal" and ev["source"]["component"] == "default-scheduler"
    assert ev["message"] == f"Successfully assigned default/quick-0 to {p['spec']['nodeName']}"
    assert ev["involvedObject"]["uid"] == p["metadata"]["uid"]


async def test_unschedulable_pod_gets_failed_scheduling_then_binds_when_a_node_fits(cloud: tuple[httpx.AsyncClient, ObjectStore], sched: Any) -> None:
    client, _ = cloud
    taint = {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}
    n1 = node("site-a-1", labels={"site": "a"})
    await add_nodes(client, n1, node("site-b-1", labels={"site": "b"}), node("site-b-2", labels={"site": "b"}))
    r = await client.patch("/api/v1/nodes/site-a-1", json={"spec": {"taints": [taint]}}, headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    await seen_by_scheduler(sched, "site-b-1", "site-b-2")
    await seen_by_scheduler(sched, "site-a-1", taint_keys=[taint["key"]])
    assert (await client.post(PODS_URL, json=pod("picky", nodeSelector={"site": "a"}))).status_code == 201
    want = (
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
        "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )

    async def failed() -> dict[str, Any] | None:
        evs = [e for e in await events_of(client, "picky") if e["reason"] == "FailedScheduling"]
        return evs[0] if evs else None

    ev = await eventually(failed, timeout=5, msg="FailedScheduling event")
    assert ev["type"] == "Warning" and ev["message"] == want
    p = (await client.get(f"{PODS_URL}/picky")).json()
    cond = next(c for c in p["status"]["conditions"] if c["type"] == "PodScheduled")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", want)
    assert await bound_to(client, "picky") is None
    # the cluster changes: the taint goes, and the pod is retried at once (no polling)
    r = await client.patch("/api/v1/nodes/site-a-1", json={"spec": {"taints": None}}, headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert await eventually(lambda: bound_to(client, "picky"), timeout=5, msg="bound once the node fits") == "site-a-1"


async def test_requests_count_bound_pods_and_a_deleted_pod_frees_room(cloud: tuple[httpx.AsyncClient, ObjectStore], sched: Any) -> None:
    client, _ = cloud
    await add_nodes(client, node("small", cpu="1"))
    await seen_by_scheduler(sched, "small")
    await client.post(PODS_URL, json=pod("first", cpu="800m"))
    assert await eventually(lambda: bound_to(client, "first"), timeout=5, msg="first bound") == "small"
    await client.post(PODS_URL, json=pod("second", cpu="500m"))

    async def insufficient() -> bool:
        return any("1 Insufficient cpu" in e["message"] for e in await events_of(client, "second"))

    await eventually(insufficient, timeout=5, msg="Insufficient cpu")
    # the first pod goes (unbound nodes here have no edged to confirm: delete at once)
    assert (await client.delete(f"{PODS_URL}/first", params={"gracePeriodSeconds": "0"})).status_code == 200
    assert await eventually(lambda: bound_to(client, "second"), timeout=5, msg="second bound") == "small"


async def test_cordon_and_scheduler_name(cloud: tuple[httpx.AsyncClient, ObjectStore], sched: Any) -> None:
    client, _ = cloud
    await add_nodes(client, node("n1"), node("n2"))
    r = await client.patch("/api/v1/nodes/n1", json={"spec": {"unschedulable": True}}, headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200
    await seen_by_scheduler(sched, "n2")
    await seen_by_scheduler(sched, "n1", unschedulable=True)
    for i in range(4):
        await client.post(PODS_URL, json=pod(f"c{i}"))
    for i in range(4):
        assert await eventually(lambda i=i: bound_to(client, f"c{i}"), timeout=5, msg="bound") == "n2", "never the cordoned node"
    await client.post(PODS_URL, json=pod("other", schedulerName="my-scheduler"))
    await asyncio.sleep(1)
    assert await bound_to(client, "other") is None, "another scheduler's pod is left alone"


async def test_binding_subresource(cloud: tuple[httpx.AsyncClient, ObjectStore]) -> None:
    client, _ = cloud
    await add_nodes(client, node("b1"), node("b2"))
    await client.post(PODS_URL, json=pod("manual", schedulerName="my-scheduler"))
    uid = (await client.get(f"{PODS_URL}/manual")).json()["metadata"]["uid"]
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "manual", "uid": uid}, "target": {"apiVersion": "v1", "kind": "Node", "name": "b2"}}
    r = await client.post(f"{PODS_URL}/manual/binding", json=body)
    assert r.status_code == 201, r.text
    assert r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    assert await bound_to(client, "manual") == "b2"
    r = await client.post(f"{PODS_URL}/manual/binding", json={**body, "target": {"kind": "Node", "name": "b1"}})
    assert r.status_code == 409 and r.json()["message"] == 'Operation cannot be fulfilled on pods/binding "manual": pod manual is already assigned to node "b2"'
    r = await client.post(f"{PODS_URL}/ghost/binding", json={**body, "metadata": {"name": "ghost"}})
    assert r.status_code == 404
    r = await client.post(f"{PODS_URL}/manual/binding", json={**body, "target": {"kind": "Node", "name": "nowhere"}})
    assert r.status_code == 404 and r.json()["message"] == 'nodes "nowhere" not found'


async def _running(store: ObjectStore, name: str) -> None:
    def run(p: dict[str, Any]) -> dict[str, Any]:
        p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        return p

    await store.mutate(PODS, "default", name, run)


async def test_eviction_honours_the_disruption_budget(cloud: tuple[httpx.AsyncClient, ObjectStore]) -> None:
    client, store = cloud
    await add_nodes(client, node("e1"))
    for i in range(3):
        await client.post(PODS_URL, json=pod(f"web-{i}", labels={"app": "web"}))
    for i in range(3):
        await eventually(lambda i=i: bound_to(client, f"web-{i}"), timeout=5, msg="bound")
        await _running(store, f"web-{i}")
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}
    r = await client.post("/apis/policy/v1/namespaces/default/poddisruptionbudgets", json=pdb)
    assert r.status_code == 201, r.text

    async def budget(allowed: int) -> dict[str, Any] | None:
        st = (await client.get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/web")).json().get("status") or {}
        return st if st.get("disruptionsAllowed") == allowed and st.get("expectedPods") == 3 else None

    st = await eventually(lambda: budget(1), timeout=5, msg="budget status computed")
    assert (st["currentHealthy"], st["desiredHealthy"], st["expectedPods"]) == (3, 2, 3)
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-0", "namespace": "default"}}
    r = await client.post(f"{PODS_URL}/web-0/eviction", json=eviction)
    assert r.status_code == 201, r.text
    assert (await client.get(f"{PODS_URL}/web-0")).json()["metadata"].get("deletionTimestamp"), "a bound pod is deleted gracefully"
    r = await client.post(f"{PODS_URL}/web-1/eviction", json={**eviction, "metadata": {"name": "web-1"}})
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["reason"] == "TooManyRequests" and body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"][0]["reason"] == "DisruptionBudget"
    # the evicted pod goes; a replacement arrives Ready: the budget allows one again
    await client.delete(f"{PODS_URL}/web-0", params={"gracePeriodSeconds": "0"})
    await client.post(PODS_URL, json=pod("web-3", labels={"app": "web"}))
    await eventually(lambda: bound_to(client, "web-3"), timeout=5, msg="bound")
    await _running(store, "web-3")
    await eventually(lambda: budget(1), timeout=5, msg="budget back to one disruption")
    r = await client.post(f"{PODS_URL}/web-1/eviction", json={**eviction, "metadata": {"name": "web-1"}})
    assert r.status_code == 201, r.text
    # a pod no budget covers is simply deleted
    await client.post(PODS_URL, json=pod("loner"))
    r = await client.post(f"{PODS_URL}/loner/eviction", json={**eviction, "metadata": {"name": "loner"}})
    assert r.status_code == 201


async def test_events_in_both_api_versions(cloud: tuple[httpx.AsyncClient, ObjectStore]) -> None:
    client, _ = cloud
    await add_nodes(client, node("v1"))
    await client.post(PODS_URL, json=pod("seen"))
    await eventually(lambda: bound_to(client, "seen"), timeout=5, msg="bound")

    async def v1_events() -> list[dict[str, Any]] | None:
        r = await client.get("/apis/events.k8s.io/v1/namespaces/default/events", params={"fieldSelector": "regarding.name=seen"})
        assert r.status_code == 200, r.text
        return r.json()["items"] or None

    items = await eventually(v1_events, timeout=5, msg="events.k8s.io view")
    ev = items[0]
    assert ev["apiVersion"] == "events.k8s.io/v1" and ev["regarding"]["name"] == "seen" and ev["note"].startswith("Successfully assigned")
    assert ev["reportingController"] == "default-scheduler" and "involvedObject" not in ev
    core = (await client.get(f"/api/v1/namespaces/default/events/{ev['metadata']['name']}")).json()
    assert core["involvedObject"] == ev["regarding"] and core["metadata"]["resourceVersion"] == ev["metadata"]["resourceVersion"]
    r = await client.get("/apis/events.k8s.io/v1")
    assert [x["name"] for x in r.json()["resources"]] == ["events"]
    r = await client.get("/api/v1")
    subs = {x["name"]: x for x in r.json()["resources"]}
    assert subs["pods/eviction"]["group"] == "policy" and subs["pods/eviction"]["kind"] == "Eviction"
    assert subs["pods/binding"]["verbs"] == ["create"]
    r = await client.get("/api/v1/namespaces/default/events", params={"fieldSelector": "source=default-scheduler"})
    assert r.status_code == 200, r.text
    assert any(e["metadata"]["name"] == ev["metadata"]["name"] for e in r.json()["items"])


async def test_events_expire(bus: Bus) -> None:
    store = ObjectStore(bus, event_ttl=2)
    await store.ensure()
    await store.ensure_system_namespaces()
    seen: list[str] = []

    async def watch() -> None:
        async with aclosing(store.watch([EVENTS], "default", from_revision=0)) as it:
            async for ev in it:
                seen.append(ev.type)
                if ev.type == DELETED:
                    assert ev.object["metadata"]["name"] == "short-lived"
                    return

    task = asyncio.create_task(watch())
    await store.create(EVENTS, {"metadata": {"name": "short-lived", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "X", "message": "y", "type": "Normal"})
    await store.create(NODES, {"metadata": {"name": "lasting"}})
    await asyncio.wait_for(task, 10)
    assert seen == ["ADDED", "DELETED"]
    assert (await store.list(EVENTS, "default"))[0] == []
    assert (await store.get(NODES, None, "lasting"))["metadata"]["name"] == "lasting", "other objects never expire"
