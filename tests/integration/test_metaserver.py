"""The metaserver's Kubernetes API semantics, over real HTTP against an in-process mesh:
list + watch from the list's revision, selectors, 410 for a revision older than the change
log, Status errors; and the apiserver's NATS relay refusing bad requests."""

from __future__ import annotations

import json
import time

import httpx

from edgebus import names
from edgebus.bus import RemoteError
from edgebus.envelope import Envelope
from edgebus.objects import CONFIGMAPS, PODS
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually


def pod(name: str, labels: dict | None = None, cm: str | None = None) -> dict:
    spec: dict = {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}]}
    if cm:
        spec["volumes"] = [{"name": "v", "configMap": {"name": cm}}]
    return {"metadata": {"name": name, "namespace": "default", "labels": labels or {}}, "spec": spec}


async def test_list_then_watch_on_the_edge(mesh) -> None:
    store, _, svcs = mesh
    port = svcs[2].settings.metamanager.metaserver_port
    await store.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}})
    await store.create(PODS, pod("a", {"app": "x"}, "cfg"))
    await store.create(PODS, pod("b", {"app": "y"}))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        await eventually(lambda: _count(http, 2), msg="pods in the metaserver")
        lst = (await http.get("/api/v1/namespaces/default/pods", params={"labelSelector": "app=x"})).json()
        assert lst["kind"] == "PodList" and [i["metadata"]["name"] for i in lst["items"]] == ["a"]
        rev = int(lst["metadata"]["resourceVersion"])
        assert all(int(i["metadata"]["resourceVersion"]) <= rev for i in lst["items"])
        table = (await http.get("/api/v1/namespaces/default/pods", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
        assert table["kind"] == "Table" and [r["cells"][0] for r in table["rows"]] == ["a", "b"]
        missing = await http.get("/api/v1/namespaces/default/pods/nope")
        assert missing.status_code == 404 and missing.json()["reason"] == "NotFound"

        # watch from the list's revision: only what changed after it
        async with http.stream("GET", "/api/v1/namespaces/default/pods", params={"watch": "1", "resourceVersion": str(rev), "timeoutSeconds": "10"}) as resp:
            lines = resp.aiter_lines()
            cur = await store.get(PODS, "default", "a")
            cur["metadata"]["labels"]["v"] = "2"
            await store.update(PODS, cur)
            ev = json.loads(await anext(lines))
            assert ev["type"] == "MODIFIED" and ev["object"]["metadata"]["labels"]["v"] == "2"
            assert int(ev["object"]["metadata"]["resourceVersion"]) > rev
            await store.delete(PODS, "default", "b", grace_period_seconds=0)  # no edged here to confirm
            ev = json.loads(await anext(lines))
            assert (ev["type"], ev["object"]["metadata"]["name"]) == ("DELETED", "b")


async def test_old_revisions_are_gone_and_bad_requests_are_refused(mesh) -> None:
    store, bus, svcs = mesh
    port = svcs[2].settings.metamanager.metaserver_port
    await store.create(PODS, pod("a"))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        await eventually(lambda: _count(http, 1), msg="pod in the metaserver")
        r = await http.get("/api/v1/namespaces/default/pods", params={"watch": "1", "resourceVersion": "abc"})
        assert r.status_code == 400 and r.json()["kind"] == "Status"
        r = await http.get("/api/v1/widgets")
        assert r.status_code == 404
        # a write is forwarded to the cloud apiserver: no apiserver in this mesh -> 503 at once
        t0 = time.monotonic()
        r = await http.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "x"}})
        assert r.status_code == 503 and "writes need the cloud" in r.json()["message"]
        assert time.monotonic() - t0 < 5

    # the apiserver's relay refuses what it must not run
    api = build_service("apiserver", nats=svcs[0].settings.nats.model_dump(), apiserver={"port": 0})
    await api.start()
    try:
        await eventually(lambda: api.ready()["ok"], msg="apiserver ready")
        for bad in ({"method": "TRACE", "path": "/api/v1/pods"}, {"method": "GET", "path": "/etc/passwd"}, {"method": "GET", "path": "/api/v1/pods", "query": "watch=1"}):
            env = Envelope.new(source="t", operation="request", content=bad)
            try:
                await bus.call(names.api_node_subject("edge-1"), env, timeout=5)
            except RemoteError as exc:
                assert exc.code == 400
            else:
                raise AssertionError(f"relay accepted {bad}")
        env = Envelope.new(source="t", operation="request", content={"method": "GET", "path": "/api/v1/namespaces/default/pods/a", "headers": {}})
        out = (await bus.call(names.api_node_subject("edge-1"), env, timeout=5)).content
        assert out["status"] == 200 and json.loads(out["body"])["metadata"]["name"] == "a"
    finally:
        await api.stop()


async def _count(http: httpx.AsyncClient, n: int) -> bool:
    r = await http.get("/api/v1/namespaces/default/pods")
    return r.status_code == 200 and len(r.json()["items"]) == n
