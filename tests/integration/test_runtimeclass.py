"""RuntimeClass (``node.k8s.io/v1``) end to end in the cloud, against a real nats-server
over real HTTP: served (discovery, OpenAPI, Table, the real ``kubectl get
runtimeclass``), validated (handler required and immutable), enforced by admission (an
unknown ``runtimeClassName`` is refused) and honoured by the scheduler (a node must
advertise the class's handler in ``status.runtimeHandlers``, and the class's
``scheduling.nodeSelector`` applies)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore

from .test_kubeedge_manifests import Kubectl
from .test_scheduling import PODS_URL, add_nodes, bound_to, cloud, events_of, node, pod, sched  # noqa: F401 - the fixtures

RC_URL = "/apis/node.k8s.io/v1/runtimeclasses"


def runtime_class(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": name}, "handler": handler, **extra}


def with_handlers(n: dict[str, Any], *handlers: str) -> dict[str, Any]:
    n["status"]["runtimeHandlers"] = [{"name": h, "features": {}} for h in handlers]
    return n


async def test_runtimeclass_is_served_validated_and_listed_by_kubectl(cloud: tuple[httpx.AsyncClient, ObjectStore], tmp_path: Path) -> None:  # noqa: F811
    client, _ = cloud
    groups = (await client.get("/apis")).json()["groups"]
    assert any(g["name"] == "node.k8s.io" and g["preferredVersion"]["groupVersion"] == "node.k8s.io/v1" for g in groups)
    res = (await client.get("/apis/node.k8s.io/v1")).json()["resources"]
    rc = next(r for r in res if r["name"] == "runtimeclasses")
    assert rc["kind"] == "RuntimeClass" and rc["namespaced"] is False
    r = await client.post(RC_URL, json=runtime_class("wasm", "wasm", scheduling={"nodeSelector": {"edge/tier": "small"}}))
    assert r.status_code == 201, r.text
    bad = await client.post(RC_URL, json={"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nohandler"}})
    assert bad.status_code == 422 and "handler" in bad.text
    cur = (await client.get(f"{RC_URL}/wasm")).json()
    cur["handler"] = "runc"
    r = await client.put(f"{RC_URL}/wasm", json=cur)
    assert r.status_code == 422 and "immutable" in r.text
    table = (await client.get(RC_URL, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Handler", "Age"]
    assert table["rows"][0]["cells"][:2] == ["wasm", "wasm"]
    doc = (await client.get("/openapi/v3/apis/node.k8s.io/v1")).json()
    assert "io.k8s.api.node.v1.RuntimeClass" in doc["components"]["schemas"]
    if shutil.which("kubectl") is None:
        pytest.skip("no kubectl binary installed")
    kc = Kubectl(tmp_path, str(client.base_url).rstrip("/"))
    out = await asyncio.to_thread(kc.run, "get", "runtimeclass")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0].split() == ["NAME", "HANDLER", "AGE"] and lines[1].split()[:2] == ["wasm", "wasm"]
    applied = await asyncio.to_thread(kc.run, "apply", "-f", "-", stdin="apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: runc}\nhandler: runc\n")
    assert applied.returncode == 0, applied.stderr
    assert (await client.get(f"{RC_URL}/runc")).json()["handler"] == "runc"


async def test_admission_refuses_an_unknown_runtime_class(cloud: tuple[httpx.AsyncClient, ObjectStore]) -> None:  # noqa: F811
    client, _ = cloud
    r = await client.post(PODS_URL, json=pod("lost", runtimeClassName="nope"))
    assert r.status_code == 403, r.text
    assert r.json()["message"] == 'pods "lost" is forbidden: pod rejected: RuntimeClass "nope" not found'
    assert (await client.get(f"{PODS_URL}/lost")).status_code == 404


async def test_scheduler_binds_a_wasm_pod_only_to_a_node_advertising_the_handler(cloud: tuple[httpx.AsyncClient, ObjectStore]) -> None:  # noqa: F811
    client, store = cloud
    assert (await client.post(RC_URL, json=runtime_class("wasm", "wasm"))).status_code == 201
    sel = runtime_class("wasm-small", "wasm", scheduling={"nodeSelector": {"tier": "small"}})
    assert (await client.post(RC_URL, json=sel)).status_code == 201
    await add_nodes(client, with_handlers(node("big-1", labels={"tier": "big"}), "runc"), with_handlers(node("small-1", labels={"tier": "small"}), "runc", "wasm"), node("old-1"))
    await asyncio.sleep(0.5)
    for i in range(4):
        assert (await client.post(PODS_URL, json=pod(f"w{i}", runtimeClassName="wasm"))).status_code == 201
    for i in range(4):
        assert await _eventually_bound(client, f"w{i}") == "small-1"
    # a class whose node selector no node with the handler matches: FailedScheduling
    await add_nodes(client, with_handlers(node("big-2", labels={"tier": "big"}), "runc", "wasm"))
    await asyncio.sleep(0.5)
    assert (await client.post(PODS_URL, json=pod("picky", runtimeClassName="wasm-small", nodeSelector={"tier": "small"}))).status_code == 201
    assert await _eventually_bound(client, "picky") == "small-1"
    assert (await client.post(PODS_URL, json=pod("none", runtimeClassName="wasm-small", nodeSelector={"zone": "x"}))).status_code == 201

    async def failed() -> str | None:
        evs = [e for e in await events_of(client, "none") if e["reason"] == "FailedScheduling"]
        return evs[0]["message"] if evs else None

    msg = await _eventually(failed)
    assert "node(s) didn't match Pod's node affinity/selector" in msg
    # a pod written by a controller (no admission) naming a class that does not exist
    await store.create(PODS, pod("ghostly", runtimeClassName="ghost"), namespace="default")

    async def ghost() -> str | None:
        evs = [e for e in await events_of(client, "ghostly") if e["reason"] == "FailedScheduling"]
        return evs[0]["message"] if evs else None

    assert await _eventually(ghost) == 'RuntimeClass "ghost" not found'
    assert await bound_to(client, "ghostly") is None


async def _eventually(fn: Any, timeout: float = 10.0) -> Any:
    from edgebus.testing.waiting import eventually

    return await eventually(fn, timeout=timeout, msg=getattr(fn, "__name__", "condition"))


async def _eventually_bound(client: httpx.AsyncClient, name: str) -> str:
    return str(await _eventually(lambda: bound_to(client, name)))
