"""Input the apiserver must bound and stored entries it must survive: a write that succeeds
never answers 500; an entry that holds no object is reported, never served, and deletable."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import msgpack
import pytest

from edgebus import names
from edgebus.bus import KV
from edgebus.natsd import free_port
from edgebus.runtime import NatsSettings
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from services.apiserver.config import ApiServerSettings, Settings
from services.apiserver.service import build

CMS = "/api/v1/namespaces/default/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
async def api(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    svc = build(Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port)))
    await svc.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await eventually(lambda: _ready(client), timeout=10, msg="apiserver ready")
            yield client
    finally:
        await asyncio.wait_for(svc.stop(), 15)


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_a_write_with_a_non_latin1_unknown_field_answers_with_its_warning(api: httpx.AsyncClient) -> None:
    for path, body in ((CMS, {"metadata": {"name": "c"}}), ("/api/v1/namespaces", {"metadata": {"name": "n1"}}), ("/api/v1/nodes", {"metadata": {"name": "node-1"}})):
        assert (await api.post(path, json=body)).status_code == 201
    for path in (f"{CMS}/c", "/api/v1/namespaces/n1", "/api/v1/namespaces/n1/status", "/api/v1/nodes/node-1", "/api/v1/nodes/node-1/status"):
        r = await api.patch(path, content=json.dumps({"ünknöwn\u2603": 1, "metadata": {"labels": {"a": "b"}}}), headers=MERGE)
        assert r.status_code == 200, (path, r.status_code, r.text)
        warning = next(v for k, v in r.headers.raw if k.lower() == b"warning").decode("utf-8")  # UTF-8 on the wire, as Go sends it
        assert warning.startswith('299 - "') and "ünknöwn\u2603" in warning, warning
    # a line break in a field name cannot end the header
    r = await api.patch(f"{CMS}/c", content=json.dumps({"x\r\nSet-Cookie: a=b": 1}), headers=MERGE)
    assert r.status_code == 200 and "set-cookie" not in r.headers


async def test_numbers_no_field_can_hold_are_refused(api: httpx.AsyncClient) -> None:
    assert (await api.post(CMS, json={"metadata": {"name": "c"}})).status_code == 201
    r = await api.request("DELETE", f"{CMS}/c", params={"gracePeriodSeconds": "3900000000000000000000"})
    assert r.status_code == 400 and "64-bit" in r.json()["message"]
    r = await api.request("DELETE", f"{CMS}/c", content=b'{"gracePeriodSeconds": 3.9e21}')
    assert r.status_code == 400
    for raw in (b'{"metadata": {"name": "big"}, "data": {"a": "b"}, "x": 123456789012345678901234567890}', b'{"metadata": {"name": "inf"}, "x": 1e400}'):
        r = await api.post(CMS, content=raw)
        assert r.status_code == 400, r.text
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n", "terminationGracePeriodSeconds": 9223372036854775807, "containers": [{"name": "c", "image": "i"}]}}
    assert (await api.post("/api/v1/namespaces/default/pods", json=pod)).status_code == 201
    r = await api.request("DELETE", "/api/v1/namespaces/default/pods/p")  # a grace period of ages: still a timestamp
    assert r.status_code == 200, r.text
    assert r.json()["metadata"]["deletionTimestamp"]


async def test_bodies_and_objects_are_bounded(api: httpx.AsyncClient) -> None:
    r = await api.post(CMS, content=b"{" + b" " * (4 << 20) + b"}")
    assert r.status_code == 413
    pod = {"metadata": {"name": "huge"}, "spec": {"containers": [{"name": "c", "image": "i", "args": ["x" * 1000] * 2500}]}}
    r = await api.post("/api/v1/namespaces/default/pods", json=pod)  # 2.5 MB: a body, not an object
    assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge", r.text


async def test_an_entry_that_holds_no_object_is_reported_and_deletable(api: httpx.AsyncClient, hub: Hub) -> None:
    bus = hub.bus("intruder")
    await bus.connect(retry_for=5)
    kv = KV(bus, names.BUCKET_OBJECTS)
    try:
        assert (await api.post(CMS, json={"metadata": {"name": "good"}, "data": {"a": "1"}})).status_code == 201
        await kv.put(names.object_key("configmaps", "default", "garbage"), b"\x00\xffnot msgpack")
        await kv.put(names.object_key("configmaps", "default", "nameless"), msgpack.packb({"data": {"x": "y" * (1 << 20)}}))
        await kv.put(names.object_key("configmaps", "default", "other"), msgpack.packb({"metadata": {"name": "someone-else", "namespace": "default"}}))
        await kv.put(names.object_key("configmaps", "default", "huge"), msgpack.packb({"metadata": {"name": "huge", "namespace": "default"}, "data": {"a": "z" * (7 << 20)}}))
        r = await api.get(CMS)
        assert r.status_code == 200
        assert [i["metadata"]["name"] for i in r.json()["items"]] == ["good"], "entries without their object are not served"
        for name in ("garbage", "nameless", "other", "huge"):
            r = await api.get(f"{CMS}/{name}")
            assert r.status_code == 500 and r.json()["reason"] == "StorageReadError", r.text
            assert names.object_key("configmaps", "default", name) in r.json()["message"]
            r = await api.delete(f"{CMS}/{name}")
            assert r.status_code == 200, r.text
            assert (await api.get(f"{CMS}/{name}")).status_code == 404
        watch = await api.get(CMS, params={"watch": "true", "timeoutSeconds": "1"})
        assert [json.loads(line)["object"]["metadata"]["name"] for line in watch.text.splitlines()] == ["good"]
    finally:
        await bus.close()
