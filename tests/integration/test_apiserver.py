"""The apiserver service against a real nats-server, driven over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from edgebus import names
from edgebus.bus import stream_state
from edgebus.natsd import free_port
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from edgebus.runtime import NatsSettings
from services.apiserver.config import ApiServerSettings, Settings
from services.apiserver.service import build

PODS = "/api/v1/namespaces/default/pods"
CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
async def api(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    settings = Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port))
    svc = build(settings)
    await svc.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, timeout=10, msg="apiserver ready")
            yield client
    finally:
        await asyncio.wait_for(svc.stop(), 15)


def pod(name: str, *, node: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def assert_status(r: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body: dict[str, Any] = r.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == code and body["reason"] == reason, body
    return body


async def test_ops_version_and_discovery(api: httpx.AsyncClient) -> None:
    r = await api.get("/healthz")
    assert r.status_code == 200 and r.json()["ok"] is True
    r = await api.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["bus"] is True
    r = await api.get("/metrics")
    assert r.status_code == 200 and "edgebus_apiserver_requests_total" in r.text
    v = (await api.get("/version")).json()
    assert v["major"] == "1" and v["minor"] == "30" and v["gitVersion"].startswith("v1.30") and v["platform"] == "linux/amd64"
    res = (await api.get("/api/v1")).json()
    assert {"pods", "pods/status", "nodes", "namespaces", "configmaps", "secrets"} <= {x["name"] for x in res["resources"]}
    ns = (await api.get("/api/v1/namespaces")).json()
    assert ns["kind"] == "NamespaceList"
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= {o["metadata"]["name"] for o in ns["items"]}


async def test_create_get_list_with_selectors(api: httpx.AsyncClient) -> None:
    for i in range(4):
        r = await api.post(PODS, json=pod(f"p{i}", node=f"n{i % 2}", labels={"app": "a" if i % 2 else "b"}))
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["metadata"]["namespace"] == "default" and created["metadata"]["uid"]
        assert int(created["metadata"]["resourceVersion"]) > 0

    r = await api.get(f"{PODS}/p1")
    assert r.status_code == 200 and r.json()["spec"]["nodeName"] == "n1" and r.json()["kind"] == "Pod"

    lst = (await api.get(PODS)).json()
    assert lst["apiVersion"] == "v1" and lst["kind"] == "PodList"
    assert [o["metadata"]["name"] for o in lst["items"]] == ["p0", "p1", "p2", "p3"]
    assert int(lst["metadata"]["resourceVersion"]) >= max(int(o["metadata"]["resourceVersion"]) for o in lst["items"])

    r = await api.get(PODS, params={"labelSelector": "app=a"})
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["p1", "p3"]
    r = await api.get("/api/v1/pods", params={"fieldSelector": "spec.nodeName=n0"})
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["p0", "p2"]
    r = await api.get("/api/v1/pods", params={"labelSelector": "app=b", "fieldSelector": "spec.nodeName=n0"})
    assert [o["metadata"]["name"] for o in r.json()["items"]] == ["p0", "p2"]
    assert_status(await api.get(PODS, params={"labelSelector": "app in (a"}), 400, "BadRequest")

    # already exists
    assert_status(await api.post(PODS, json=pod("p0")), 409, "AlreadyExists")
    # cluster-scoped create and get
    r = await api.post("/api/v1/nodes", json={"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1.site"}})
    assert r.status_code == 201, r.text
    assert (await api.get("/api/v1/nodes/edge-1.site")).json()["metadata"]["name"] == "edge-1.site"
    # Namespace object and a collection inside a namespace share the /api/v1/namespaces prefix
    r = await api.post("/api/v1/namespaces", json={"metadata": {"name": "team-a"}})
    assert r.status_code == 201 and r.json()["status"]["phase"] == "Active"
    assert (await api.get("/api/v1/namespaces/team-a")).json()["kind"] == "Namespace"
    assert (await api.get("/api/v1/namespaces/team-a/pods")).json()["items"] == []
    r = await api.post("/api/v1/namespaces/team-a/configmaps", json=cm("x", k="v"))
    assert r.status_code == 201 and r.json()["metadata"]["namespace"] == "team-a"


async def test_errors_are_status_bodies(api: httpx.AsyncClient) -> None:
    # invalid name: 422 naming the field
    body = assert_status(await api.post(CMS, json=cm("Bad_Name")), 422, "Invalid")
    assert "metadata.name" in body["message"] and 'ConfigMap "Bad_Name" is invalid' in body["message"]
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    body = assert_status(await api.post(PODS, json={"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}), 422, "Invalid")
    assert "spec.containers[0].image" in body["message"]
    # unknown namespace
    body = assert_status(await api.post("/api/v1/namespaces/nope/configmaps", json=cm("a")), 404, "NotFound")
    assert 'namespaces "nope" not found' in body["message"]
    # not found, unknown resource, cluster-scoped resource under a namespace
    assert_status(await api.get(f"{CMS}/missing"), 404, "NotFound")
    assert_status(await api.get("/api/v1/namespaces/default/widgets"), 404, "NotFound")
    assert_status(await api.get("/api/v1/widgets"), 404, "NotFound")
    assert_status(await api.get("/api/v1/namespaces/default/nodes"), 404, "NotFound")
    assert_status(await api.get("/no/such/path"), 404, "NotFound")
    # malformed JSON and wrong body types: 400
    bad = {"content-type": "application/json"}
    assert_status(await api.post(CMS, content=b'{"metadata": ', headers=bad), 400, "BadRequest")
    assert_status(await api.post(CMS, content=b"[1, 2]", headers=bad), 400, "BadRequest")
    assert_status(await api.post(CMS, content=b'{"metadata": {"name": "n"}, "data": {"a": NaN}}', headers=bad), 400, "BadRequest")
    assert_status(await api.post(CMS, content=b"", headers=bad), 400, "BadRequest")
    # namespace mismatch on create, name mismatch on update
    other = cm("mismatch")
    other["metadata"]["namespace"] = "kube-system"
    body = assert_status(await api.post(CMS, json=other), 400, "BadRequest")
    assert "does not match the namespace sent on the request" in body["message"]
    assert (await api.post(CMS, json=cm("a", k="1"))).status_code == 201
    assert_status(await api.put(f"{CMS}/b", json=cm("a", k="2")), 400, "BadRequest")
    assert_status(await api.put(f"{CMS}/a", content=b"{nope", headers=bad), 400, "BadRequest")
    # bad query parameters
    assert_status(await api.get(CMS, params={"watch": "true", "timeoutSeconds": "soon"}), 400, "BadRequest")
    assert_status(await api.get(CMS, params={"watch": "true", "resourceVersion": "abc"}), 400, "BadRequest")
    # system namespaces cannot be deleted
    assert_status(await api.delete("/api/v1/namespaces/default"), 403, "Forbidden")


async def test_update_conflict_and_delete(api: httpx.AsyncClient) -> None:
    created = (await api.post(CMS, json=cm("c1", k="1"))).json()
    upd = dict(created, data={"k": "2"})
    r = await api.put(f"{CMS}/c1", json=upd)
    assert r.status_code == 200 and r.json()["data"] == {"k": "2"}
    assert int(r.json()["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    stale = dict(created, data={"k": "3"})  # still carries the first resourceVersion
    body = assert_status(await api.put(f"{CMS}/c1", json=stale), 409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert (await api.get(f"{CMS}/c1")).json()["data"] == {"k": "2"}

    r = await api.delete(f"{CMS}/c1")
    assert r.status_code == 200 and r.json()["kind"] == "ConfigMap" and r.json()["data"] == {"k": "2"}
    assert_status(await api.get(f"{CMS}/c1"), 404, "NotFound")
    assert_status(await api.delete(f"{CMS}/c1"), 404, "NotFound")


async def test_a_put_gives_its_manager_the_fields_it_changed(api: httpx.AsyncClient) -> None:
    """PUTs record managed fields as kube-apiserver does (operation Update, per field
    manager), also when the update answers from the version it wrote last."""
    created = (await api.post(f"{CMS}?fieldManager=maker", json=cm("mf", a="1", b="1"))).json()
    r = await api.put(f"{CMS}/mf?fieldManager=tuner", json=dict(created, data={"a": "2", "b": "1"}))
    assert r.status_code == 200, r.text
    again = await api.put(f"{CMS}/mf?fieldManager=tuner", json=dict(r.json(), data={"a": "3", "b": "1", "c": "1"}))
    assert again.status_code == 200, again.text
    got = (await api.get(f"{CMS}/mf")).json()
    owners = {e["manager"]: e for e in got["metadata"]["managedFields"]}
    assert set(owners) == {"maker", "tuner"} and {e["operation"] for e in owners.values()} == {"Update"}
    assert owners["tuner"]["fieldsV1"]["f:data"] == {"f:a": {}, "f:c": {}}
    assert owners["maker"]["fieldsV1"]["f:data"] == {"f:b": {}}


async def test_status_subresource(api: httpx.AsyncClient) -> None:
    p = (await api.post(PODS, json=pod("s1"))).json()
    # PUT /status changes only the status
    with_status = dict(p, status={"phase": "Running"}, spec=dict(p["spec"], nodeName="ignored"))
    r = await api.put(f"{PODS}/s1/status", json=with_status)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == {"phase": "Running"} and "nodeName" not in r.json()["spec"]
    # PUT on the main resource keeps the stored status
    cur = r.json()
    r = await api.put(f"{PODS}/s1", json=dict(cur, status={"phase": "Failed"}, metadata=dict(cur["metadata"], labels={"x": "y"})))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == {"phase": "Running"} and r.json()["metadata"]["labels"] == {"x": "y"}
    got = (await api.get(f"{PODS}/s1/status")).json()
    assert got["status"] == {"phase": "Running"} and got["metadata"]["labels"] == {"x": "y"}
    # merge patch on status
    r = await api.patch(f"{PODS}/s1/status", content=json.dumps({"status": {"podIP": "10.0.0.5"}}), headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["status"] == {"phase": "Running", "podIP": "10.0.0.5"}
    # configmaps have no status subresource
    assert (await api.post(CMS, json=cm("nostatus"))).status_code == 201
    assert_status(await api.get(f"{CMS}/nostatus/status"), 404, "NotFound")


async def test_patches(api: httpx.AsyncClient) -> None:
    await api.post(CMS, json=cm("pt", a="1", b="2"))
    merge = {"content-type": "application/merge-patch+json"}
    r = await api.patch(f"{CMS}/pt", content=json.dumps({"data": {"a": None, "c": "3"}, "metadata": {"labels": {"l": "v"}}}), headers=merge)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == {"b": "2", "c": "3"} and r.json()["metadata"]["labels"] == {"l": "v"}
    rv = r.json()["metadata"]["resourceVersion"]

    jp = {"content-type": "application/json-patch+json"}
    ops = [{"op": "test", "path": "/data/b", "value": "2"}, {"op": "replace", "path": "/data/b", "value": "20"}, {"op": "remove", "path": "/data/c"}]
    r = await api.patch(f"{CMS}/pt", content=json.dumps(ops), headers=jp)
    assert r.status_code == 200 and r.json()["data"] == {"b": "20"}
    assert_status(await api.patch(f"{CMS}/pt", content=json.dumps([{"op": "test", "path": "/data/b", "value": "x"}]), headers=jp), 422, "Invalid")
    assert_status(await api.patch(f"{CMS}/pt", content=json.dumps({"op": "add"}), headers=jp), 400, "BadRequest")

    smp = {"content-type": "application/strategic-merge-patch+json"}
    r = await api.patch(f"{CMS}/pt", content=json.dumps({"data": {"d": "4"}}), headers=smp)
    assert r.status_code == 200 and r.json()["data"] == {"b": "20", "d": "4"}

    # a patch that pins a stale resourceVersion conflicts
    assert_status(await api.patch(f"{CMS}/pt", content=json.dumps({"metadata": {"resourceVersion": rv}, "data": {}}), headers=merge), 409, "Conflict")
    # errors
    assert_status(await api.patch(f"{CMS}/pt", content=b"{", headers=merge), 400, "BadRequest")
    assert_status(await api.patch(f"{CMS}/pt", content=b"{}", headers={"content-type": "text/plain"}), 415, "UnsupportedMediaType")
    assert_status(await api.patch(f"{CMS}/nope", content=b"{}", headers=merge), 404, "NotFound")
    assert_status(await api.patch(f"{CMS}/pt", content=json.dumps({"metadata": {"name": "other"}}), headers=merge), 400, "BadRequest")

    # strategic merge of a pod's containers by name keeps the fields it does not mention
    p = pod("sm")
    p["spec"]["containers"][0]["command"] = ["sleep", "1"]
    await api.post(PODS, json=p)
    r = await api.patch(f"{PODS}/sm", content=json.dumps({"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}), headers=smp)
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["containers"] == [{"name": "c", "image": "busybox:2", "command": ["sleep", "1"]}]


class Events:
    """The events of a watch response, read line by line across several reads."""

    def __init__(self, resp: httpx.Response) -> None:
        self.lines = resp.aiter_lines()

    async def next(self, n: int, timeout: float = 5) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            while len(out) < n:
                line = await anext(self.lines)
                if line.strip():
                    out.append(json.loads(line))
            return out

        return await asyncio.wait_for(read(), timeout)


async def test_watch_from_resource_version(api: httpx.AsyncClient) -> None:
    created = (await api.post(CMS, json=cm("w1", v="1"))).json()
    rv = created["metadata"]["resourceVersion"]
    async with api.stream("GET", CMS, params={"watch": "true", "resourceVersion": rv}) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.headers.get("transfer-encoding") == "chunked"
        r = await api.put(f"{CMS}/w1", json=dict(created, data={"v": "2"}))
        assert r.status_code == 200
        assert (await api.delete(f"{CMS}/w1")).status_code == 200
        events = await Events(resp).next(2)
    assert [(e["type"], e["object"]["metadata"]["name"], e["object"]["data"]) for e in events] == [
        ("MODIFIED", "w1", {"v": "2"}),
        ("DELETED", "w1", {"v": "2"}),
    ]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(events[0]["object"]["metadata"]["resourceVersion"])


async def test_watch_initial_state_and_selectors(api: httpx.AsyncClient) -> None:
    await api.post(PODS, json=pod("a1", node="n1"))
    await api.post(PODS, json=pod("a2", node="n2"))
    async with api.stream("GET", "/api/v1/pods", params={"watch": "1", "fieldSelector": "spec.nodeName=n1"}) as resp:
        ev = Events(resp)
        first = await ev.next(1)
        await api.post(PODS, json=pod("a3", node="n2"))  # not selected
        await api.post(PODS, json=pod("a4", node="n1"))
        second = await ev.next(1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in first + second] == [("ADDED", "a1"), ("ADDED", "a4")]


async def kv_consumers(hub: Hub) -> int:
    bus = hub.bus("probe", request_timeout=3)
    await bus.connect(retry_for=5)
    try:
        return (await stream_state(bus, names.kv_stream(names.BUCKET_OBJECTS))).consumers
    finally:
        await bus.close()


def open_watches(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith('edgebus_watches{server="apiserver"} '):
            return float(line.split()[1])
    raise AssertionError("no edgebus_watches metric for the apiserver")


async def test_watch_timeout_and_disconnect_end_cleanly(api: httpx.AsyncClient, hub: Hub) -> None:
    await api.post(CMS, json=cm("t1"))
    base_watches = open_watches((await api.get("/metrics")).text)

    # the apiserver's own watch (authorization objects) is there all along
    base_consumers = await kv_consumers(hub)

    async def consumers_gone() -> bool:
        return await kv_consumers(hub) == base_consumers

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with api.stream("GET", CMS, params={"watch": "true", "timeoutSeconds": "1"}) as resp:
        lines = [line async for line in resp.aiter_lines() if line.strip()]
    assert 0.9 <= loop.time() - t0 < 4
    assert [json.loads(x)["type"] for x in lines] == ["ADDED"]

    # a client that goes away mid-stream
    async with api.stream("GET", CMS, params={"watch": "true"}) as resp:
        await Events(resp).next(1)
        assert open_watches((await api.get("/metrics")).text) == base_watches + 1

    async def watches_closed() -> bool:
        return open_watches((await api.get("/metrics")).text) == base_watches

    await eventually(watches_closed, timeout=5, msg="watch stream closed after the disconnect")
    await eventually(consumers_gone, timeout=5, msg="watch consumers deleted")


async def test_stop_ends_open_watches(hub: Hub) -> None:
    port = free_port()
    svc = build(Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port)))
    await svc.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, timeout=10)
        async with client.stream("GET", "/api/v1/namespaces", params={"watch": "true"}) as resp:
            await Events(resp).next(1)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await asyncio.wait_for(svc.stop(), 10)
            assert loop.time() - t0 < 3
    assert svc.stopped.is_set()


async def test_pod_spec_updates_limited_as_kubernetes(api: httpx.AsyncClient) -> None:
    p = pod("frozen", node="n1")
    p["spec"]["containers"][0]["command"] = ["sleep", "3600"]
    created = (await api.post(PODS, json=p)).json()
    changed = json.loads(json.dumps(created))
    changed["spec"]["containers"][0]["command"] = ["sh"]
    body = assert_status(await api.put(f"{PODS}/frozen", json=changed), 422, "Invalid")
    assert "pod updates may not change fields other than `spec.containers[*].image`" in body["message"]
    assert "spec.containers[0].command" in body["message"]
    # moving a bound pod to another node is refused too, by any kind of patch
    body = assert_status(await api.patch(f"{PODS}/frozen", json={"spec": {"nodeName": "n2"}}, headers={"content-type": "application/merge-patch+json"}), 422, "Invalid")
    assert "spec.nodeName" in body["message"]
    # the image may change
    r = await api.patch(f"{PODS}/frozen", json={"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}, headers={"content-type": "application/strategic-merge-patch+json"})
    assert r.status_code == 200 and r.json()["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert (await api.get(f"{PODS}/frozen")).json()["spec"]["nodeName"] == "n1"
    # a pod created unbound may be bound once
    await api.post(PODS, json=pod("unbound"))
    r = await api.patch(f"{PODS}/unbound", json={"spec": {"nodeName": "n1"}}, headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    # a failed JSON-patch test speaks Kubernetes
    body = assert_status(await api.patch(f"{PODS}/frozen", json=[{"op": "test", "path": "/metadata/name", "value": "x"}], headers={"content-type": "application/json-patch+json"}), 422, "Invalid")
    assert body["message"].endswith("testing value /metadata/name failed: test failed")
    # quantities
    bad = pod("greedy", node="n1")
    bad["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
    body = assert_status(await api.post(PODS, json=bad), 422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.containers[0].resources.limits[cpu]"


async def test_unknown_field_selector_is_a_bad_request(api: httpx.AsyncClient) -> None:
    body = assert_status(await api.get(PODS, params={"fieldSelector": "spec.foo=bar"}), 400, "BadRequest")
    assert body["message"] == "field label not supported: spec.foo"
    assert_status(await api.get(CMS, params={"fieldSelector": "data.x=1"}), 400, "BadRequest")
    assert_status(await api.get(PODS, params={"watch": "1", "fieldSelector": "spec.foo=bar"}), 400, "BadRequest")
    assert (await api.get(PODS, params={"fieldSelector": "status.phase=Running"})).status_code == 200


async def test_dry_run_checks_everything_and_stores_nothing(api: httpx.AsyncClient) -> None:
    r = await api.post(CMS, params={"dryRun": "All"}, json=cm("ghost", a="1"))
    assert r.status_code == 201 and r.json()["metadata"]["uid"] and "resourceVersion" not in r.json()["metadata"]
    assert (await api.get(f"{CMS}/ghost")).status_code == 404
    assert_status(await api.post(CMS, params={"dryRun": "All"}, json=cm("Bad_Name")), 422, "Invalid")
    created = (await api.post(CMS, json=cm("real", a="1"))).json()
    assert_status(await api.post(CMS, params={"dryRun": "All"}, json=cm("real")), 409, "AlreadyExists")
    r = await api.patch(f"{CMS}/real", params={"dryRun": "All"}, json={"data": {"a": "2"}}, headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200 and r.json()["data"] == {"a": "2"} and r.json()["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    r = await api.put(f"{CMS}/real", params={"dryRun": "All"}, json={**created, "data": {"a": "3"}})
    assert r.status_code == 200 and r.json()["data"] == {"a": "3"}
    r = await api.request("DELETE", f"{CMS}/real", params={"dryRun": "All"})
    assert r.status_code == 200
    got = (await api.get(f"{CMS}/real")).json()
    assert got["data"] == {"a": "1"} and got["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    body = assert_status(await api.post(CMS, params={"dryRun": "Some"}, json=cm("x")), 400, "BadRequest")
    assert 'unsupported dry run value "Some"' in body["message"]
