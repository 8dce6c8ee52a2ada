"""The apiserver's workload endpoints over real HTTP against a real nats-server: discovery,
the scale subresource, immutable selectors, status kept by the main PUT, deletion with
propagationPolicy, and a protobuf body as kubectl 1.32+ sends it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from edgebus.natsd import free_port
from edgebus.runtime import NatsSettings
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from services.apiserver.config import ApiServerSettings, Settings
from services.apiserver.service import build

DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


@pytest.fixture
async def api(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    svc = build(Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port)))
    await svc.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, timeout=10, msg="apiserver ready")
            yield client
    finally:
        await asyncio.wait_for(svc.stop(), 15)


def deployment(name: str = "web", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}},
    }


async def test_scale_subresource_and_immutable_selector(api: httpx.AsyncClient) -> None:
    r = await api.post(DEPLOYS, json=deployment())
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["strategy"]["type"] == "RollingUpdate"
    scale = (await api.get(f"{DEPLOYS}/web/scale")).json()
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 0, "selector": "app=web"}
    r = await api.patch(f"{DEPLOYS}/web/scale", content=b'{"spec":{"replicas":5}}', headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 5
    d = (await api.get(f"{DEPLOYS}/web")).json()
    assert d["spec"]["replicas"] == 5 and d["metadata"]["generation"] == 2
    r = await api.patch(f"{DEPLOYS}/web/scale", content=b'{"spec":{"replicas":-1}}', headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 422 and "spec.replicas: Invalid value: -1" in r.json()["message"]
    stale = {**scale, "spec": {"replicas": 3}}
    assert (await api.put(f"{DEPLOYS}/web/scale", json=stale)).status_code == 409  # names the old resourceVersion
    r = await api.patch(f"{DEPLOYS}/web", content=b'{"spec":{"selector":{"matchLabels":{"app":"other"}},"template":{"metadata":{"labels":{"app":"other"}}}}}', headers={"content-type": "application/strategic-merge-patch+json"})
    assert r.status_code == 422 and "spec.selector" in r.text and "field is immutable" in r.text
    # the main PUT keeps the status (a subresource), the status PUT keeps the spec
    d = (await api.get(f"{DEPLOYS}/web")).json()
    d["status"] = {"replicas": 99}
    r = await api.put(f"{DEPLOYS}/web", json=d)
    assert r.status_code == 200 and "replicas" not in (r.json().get("status") or {})
    st = r.json()
    st["status"] = {"replicas": 1}
    st["spec"]["replicas"] = 50
    r = await api.put(f"{DEPLOYS}/web/status", json=st)
    assert r.json()["status"] == {"replicas": 1} and r.json()["spec"]["replicas"] == 5
    assert (await api.get("/apis/apps/v1/namespaces/default/daemonsets/x/scale")).status_code == 404


async def test_delete_propagation_policies(api: httpx.AsyncClient) -> None:
    for name in ("fg", "orph", "bg"):
        assert (await api.post(DEPLOYS, json=deployment(name))).status_code == 201
    r = await api.request("DELETE", f"{DEPLOYS}/fg", json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})
    assert r.status_code == 200 and r.json()["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert (await api.get(f"{DEPLOYS}/fg")).json()["metadata"]["deletionTimestamp"]  # stays until the dependents are gone
    r = await api.delete(f"{DEPLOYS}/orph", params={"propagationPolicy": "Orphan"})
    assert r.json()["metadata"]["finalizers"] == ["orphan"]
    assert (await api.delete(f"{DEPLOYS}/bg")).status_code == 200
    assert (await api.get(f"{DEPLOYS}/bg")).status_code == 404  # Background: gone at once
    # the garbage collector's part, done by hand: the last finalizer removed removes the object
    r = await api.patch(f"{DEPLOYS}/fg", content=b'{"metadata":{"finalizers":null}}', headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200
    assert (await api.get(f"{DEPLOYS}/fg")).status_code == 404
    r = await api.request("DELETE", f"{DEPLOYS}/orph", json={"propagationPolicy": "Sideways"})
    assert r.status_code == 400 and "Unsupported value" in r.json()["message"]


async def test_protobuf_create_and_discovery(api: httpx.AsyncClient) -> None:
    from tests.unit.test_protobuf import envelope, ld, s

    # a ConfigMap as kubectl 1.33's `create configmap cfg --from-literal=a=1` sends it
    body = envelope("v1", "ConfigMap", ld(1, s(1, "cfg")) + ld(2, s(1, "a") + ld(2, b"1")))
    r = await api.post("/api/v1/namespaces/default/configmaps", content=body, headers={"content-type": "application/vnd.kubernetes.protobuf", "accept": "application/vnd.kubernetes.protobuf,application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["data"] == {"a": "1"}
    r = await api.post("/api/v1/namespaces/default/configmaps", content=b"\xa1", headers={"content-type": "application/cbor"})
    assert r.status_code == 415
    apps = {x["name"]: x for x in (await api.get("/apis/apps/v1")).json()["resources"]}
    assert apps["deployments"]["categories"] == ["all"] and apps["deployments/scale"]["kind"] == "Scale"
    groups = {g["name"] for g in (await api.get("/apis")).json()["groups"]}
    assert {"apps", "batch", "apps.kubeedge.io", "devices.kubeedge.io"} <= groups
