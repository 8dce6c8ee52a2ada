"""The web console against a real apiserver (HTTPS, bearer tokens, RBAC) on a real
nats-server, over real HTTP: sign-in and its cookie, pages as the user (RBAC decides what
they show), the live stream (server-sent events) pushing a change, setting a desired value
(CSRF, Origin, 403 for a user without the right)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgebus.natsd import free_port
from edgebus.objects import CLUSTERROLEBINDINGS, CLUSTERROLES, DEVICEMODELS, DEVICES, NODES
from edgebus.objectstore import ObjectStore
from edgebus.runtime import NatsSettings
from edgebus.testing.security import ApiCredentials, make_credentials
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from services.apiserver.config import ApiServerSettings, Settings
from services.apiserver.console.session import COOKIE, csrf_token
from services.apiserver.service import build

VIEW = ["get", "list", "watch"]


@dataclass
class Console:
    url: str
    creds: ApiCredentials
    store: ObjectStore

    def client(self, **kw: Any) -> httpx.AsyncClient:
        ctx = ssl.create_default_context(cadata=self.creds.ca_pem.decode())
        return httpx.AsyncClient(base_url=self.url, verify=ctx, timeout=15, **kw)

    async def signed_in(self, token: str) -> httpx.AsyncClient:
        """A client with a console session (close it with ``aclose``)."""
        c = self.client()
        r = await c.post("/console/login", data={"token": token, "next": "/console/"})
        assert r.status_code == 303 and r.headers["location"] == "/console/", r.text
        return c


@contextlib.asynccontextmanager
async def closing(*clients: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for c in clients:
            await c.aclose()


def node(name: str, ready: str = "True", **labels: str) -> dict[str, Any]:
    now = "2026-01-01T00:00:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "EdgeReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]},
    }


MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "thermo", "namespace": "default"},
    "spec": {"protocol": "modbus", "properties": [{"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "5", "maximum": "35"}, {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"}]},
}
DEVICE = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "Device",
    "metadata": {"name": "t1", "namespace": "default"},
    "spec": {"deviceModelRef": {"name": "thermo"}, "nodeName": "edge-a", "protocol": {"protocolName": "modbus"}, "properties": [{"name": "setpoint", "desired": {"value": "22"}}]},
}


@pytest.fixture
async def console(hub: Hub, tmp_path: Path) -> AsyncIterator[Console]:
    creds = make_credentials(tmp_path / "creds")
    port = free_port()
    svc = build(Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port, **creds.apiserver_settings())))
    await svc.start()
    await eventually(lambda: svc.ready()["ok"], timeout=15, msg="apiserver ready")
    bus = hub.bus("test")
    await bus.connect(retry_for=5)
    store = ObjectStore(bus)
    rules = [{"apiGroups": [""], "resources": ["nodes", "pods", "events"], "verbs": VIEW}, {"apiGroups": ["devices.kubeedge.io"], "resources": ["devices", "devicemodels"], "verbs": VIEW}]
    await store.create(CLUSTERROLES, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "viewer"}, "rules": rules})
    await store.create(
        CLUSTERROLEBINDINGS,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "viewer"},
            "subjects": [{"kind": "User", "name": "viewer", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    for n in (node("edge-a", site="north"), node("edge-b", "False", site="south")):
        await store.create(NODES, n)
    await store.create(DEVICEMODELS, MODEL, namespace="default")
    await store.create(DEVICES, DEVICE, namespace="default")
    try:
        yield Console(f"https://127.0.0.1:{port}", creds, store)
    finally:
        await bus.close()
        await asyncio.wait_for(svc.stop(), 15)


async def test_sign_in_sets_a_strict_cookie_and_bad_tokens_are_refused(console: Console) -> None:
    async with console.client() as c:
        r = await c.get("/console/")
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
        r = await c.post("/console/login", data={"token": "not-a-token"})
        assert r.status_code == 401 and "not accepted" in r.text and COOKIE not in r.headers.get("set-cookie", "")
        r = await c.post("/console/login", data={"token": console.creds.admin_token}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403, "a sign-in posted from another site is refused"
        r = await c.post("/console/login", data={"token": console.creds.admin_token, "next": "https://evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/console/", "never redirected off the console"
        cookie = r.headers["set-cookie"].lower()
        for attr in ("httponly", "secure", "samesite=strict", "path=/console"):
            assert attr in cookie, cookie
        r = await c.get("/console/")
        assert r.status_code == 200 and 'id="node-edge-a"' in r.text and 'id="node-edge-b"' in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
        js = await c.get("/console/static/htmx-2.0.11.min.js")
        assert js.status_code == 200 and "htmx" in js.text[:2000], "htmx is served by the console itself"
        # the API itself still wants a bearer token: the console's cookie is not a credential there
        assert (await c.get("/api/v1/nodes")).status_code == 401


async def test_pages_show_what_the_users_rbac_allows(console: Console) -> None:
    nobody = await console.signed_in(console.creds.user_token("nobody"))
    viewer = await console.signed_in(console.creds.user_token("viewer"))
    async with closing(nobody, viewer):
        r = await nobody.get("/console/")
        assert r.status_code == 200 and "edge-a" not in r.text
        assert 'data-feed="nodes"' in r.text and "403 Forbidden" in r.text
        r = await viewer.get("/console/?status=notready")
        assert 'id="node-edge-b"' in r.text and 'id="node-edge-a"' not in r.text
        r = await viewer.get("/console/?group=site")
        assert 'data-group="north"' in r.text and 'data-group="south"' in r.text
        r = await viewer.get("/console/devices/default/t1")
        assert r.status_code == 200 and 'id="prop-setpoint"' in r.text and 'id="desired-form"' in r.text
        r = await viewer.get("/console/workloads")
        assert r.status_code == 200 and ("not served by this apiserver yet" in r.text or "403 Forbidden" in r.text)


async def test_the_stream_pushes_a_change(console: Console) -> None:
    c = await console.signed_in(console.creds.user_token("viewer"))
    async with closing(c), c.stream("GET", "/console/stream/fleet") as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        lines = s.aiter_lines()

        async def next_event() -> str:
            data = []
            async for line in lines:
                if line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and data:
                    return "\n".join(data)
            raise AssertionError("stream ended")

        first = await asyncio.wait_for(next_event(), 10)
        assert 'id="node-edge-a"' in first and "edge-c" not in first
        await console.store.create(NODES, node("edge-c", site="north"))
        pushed = await asyncio.wait_for(next_event(), 10)
        assert 'id="node-edge-c"' in pushed


async def test_setting_a_desired_value_needs_csrf_and_rbac(console: Console) -> None:
    admin = await console.signed_in(console.creds.admin_token)
    vt = console.creds.user_token("viewer")
    viewer = await console.signed_in(vt)
    path = "/console/devices/default/t1/desired"
    async with closing(admin, viewer):
        r = await admin.post(path, data={"property": "setpoint", "value": "25"})
        assert r.status_code == 403 and "CSRF" in r.text
        good = csrf_token(console.creds.admin_token)
        r = await admin.post(path, data={"property": "setpoint", "value": "25", "csrf": good}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403, "a write from another origin is refused even with the token"
        r = await admin.post(path, data={"property": "setpoint", "value": "99", "csrf": good})
        assert r.status_code == 422 and "above the maximum" in r.text
        r = await admin.post(path, data={"property": "temperature", "value": "20", "csrf": good})
        assert r.status_code == 422 and "ReadOnly" in r.text
        r = await admin.post(path, headers={"X-CSRF-Token": good}, data={"property": "setpoint", "value": "25.5"})
        assert r.status_code == 200, r.text
        dev = await console.store.get(DEVICES, "default", "t1")
        assert dev["spec"]["properties"][0]["desired"]["value"] == "25.5"
        r = await viewer.post(path, data={"property": "setpoint", "value": "30", "csrf": csrf_token(vt)})
        assert r.status_code == 403, r.text
        assert "403" in r.text
        assert (await console.store.get(DEVICES, "default", "t1"))["spec"]["properties"][0]["desired"]["value"] == "25.5"
