"""An edge node's metaserver authenticates its local clients on the node alone: anonymous
requests refused, the local admin token, ServiceAccount tokens verified with the cluster's
public key and authorized with the RBAC objects edgecontroller routes to every node (also
while the node is offline); writes forwarded as the node, so the Node authorizer decides.
A real hub, a real leaf (through a proxy to cut the link), the real services in-process,
and the real kubectl with ``edgebus kubeconfig --node``."""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edgebus.auth import Issuer, generate_key_pair
from edgebus.cli.kubeconfig import render
from edgebus.natsd import free_port
from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore
from edgebus.testing.security import ApiCredentials, make_credentials
from edgebus.testing.services import build_service
from edgebus.testing.servers import Cluster, Leaf, cloudhub_identity, register_node, start_leaf
from edgebus.testing.waiting import eventually
from tests.e2e.kubectl import Kubectl

UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


@dataclass
class Edge:
    meta: str  # the metaserver's URL
    api: str  # the cloud apiserver's URL (HTTPS)
    admin_token_file: Path
    creds: ApiCredentials
    store: ObjectStore
    leaf: Leaf
    tmp: Path

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.meta, headers=headers, verify=ssl.create_default_context(cafile=str(self.creds.ca.public)), timeout=15)

    def cloud(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api, headers={"Authorization": f"Bearer {self.creds.admin_token}"}, verify=ssl.create_default_context(cafile=str(self.creds.ca.public)), timeout=15)


@pytest.fixture
async def edge(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Edge]:
    creds = make_credentials(tmp_path / "creds")
    leaf = start_leaf(tmp_path, cluster.hub, "edge-1", via_proxy=True)
    cluster.leaves["edge-1"] = leaf
    hub = cluster.hub
    api_port, meta_port = free_port(), free_port()
    token_file = tmp_path / "edge-1" / "data" / "admin.token"
    mm = {
        "data_dir": str(tmp_path / "mm"),
        "metaserver_port": meta_port,
        "admin_token_file": str(token_file),
        "auth": {"token_keys": [str(creds.signing.public)]},
        # kubectl sends credentials only over HTTPS
        "metaserver_tls_cert_file": str(creds.serving.public),
        "metaserver_tls_key_file": str(creds.serving.private),
    }
    svcs = [
        build_service("apiserver", nats=hub.nats_settings("apiserver"), apiserver={"port": api_port, **creds.apiserver_settings()}),
        build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub=cloudhub_identity(hub, node_grace_period=30)),
        build_service("edgecontroller", nats=hub.nats_settings("edgecontroller")),
        build_service("metamanager", node="edge-1", nats=leaf.nats_settings("metamanager"), metamanager=mm),
        build_service("edgehub", node="edge-1", nats=leaf.nats_settings("edgehub"), edgehub={"heartbeat_interval": 0.5}),
    ]
    bus = hub.bus("test")
    await bus.connect(retry_for=5)
    store0 = ObjectStore(bus)
    await store0.ensure()
    await store0.ensure_system_namespaces()
    await register_node(store0, "edge-1")
    for s in svcs:
        await s.start()
    e = Edge(f"https://127.0.0.1:{meta_port}", f"https://127.0.0.1:{api_port}", token_file, creds, ObjectStore(bus), leaf, tmp_path)
    await eventually(lambda: svcs[0].ready()["ok"], timeout=15, msg="apiserver ready")
    try:
        yield e
    finally:
        await bus.close()
        for s in reversed(svcs):
            await asyncio.wait_for(s.stop(), 15)


async def _status(c: httpx.AsyncClient, path: str, code: int) -> bool:
    return (await c.get(path)).status_code == code


async def _message(c: httpx.AsyncClient, path: str, code: int, message: str) -> bool:
    r = await c.get(path)
    return r.status_code == code and r.json().get("message") == message


async def test_local_admin_and_anonymous(edge: Edge, tmp_path: Path) -> None:
    assert stat.S_IMODE(edge.admin_token_file.stat().st_mode) == 0o600
    admin_token = edge.admin_token_file.read_text().strip()
    await edge.store.create(PODS, {"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}]}})
    async with edge.client() as anon, edge.client("wrong") as bad, edge.client(admin_token) as admin:
        r = await anon.get("/api/v1/namespaces/default/pods")
        assert r.status_code == 401 and r.json() == UNAUTHORIZED
        assert (await bad.get("/api/v1/namespaces/default/pods")).status_code == 401
        other = tmp_path / "other.key"
        generate_key_pair(other)
        async with edge.client(Issuer.from_file(other).user_token("edgebus-admin", ["system:masters"])) as forged:
            assert (await forged.get("/api/v1/pods")).status_code == 401, "a token of another cluster's key"
        await eventually(lambda: _status(admin, "/api/v1/namespaces/default/pods/web", 200), timeout=15, msg="the pod on the node")
        assert (await admin.get("/api/v1/namespaces/default/secrets")).status_code == 200, "the local admin reads everything the node holds"
        # health is never refused; /version is public once the node holds the default policy
        assert (await anon.get("/healthz")).status_code == 200
        await eventually(lambda: _status(anon, "/version", 200), timeout=15, msg="the default RBAC policy routed to the node (system:public-info-viewer)")
        assert (await anon.get("/openapi/v3")).status_code == 401
        # writes go to the cloud as the node: a node may patch its own Node, not create ConfigMaps
        r = await admin.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "x"}})
        assert r.status_code == 403 and r.json()["message"] == (
            'configmaps is forbidden: User "system:node:edge-1" cannot create resource "configmaps" in API group "" in the namespace "default"'
        )
        merge = {"Content-Type": "application/merge-patch+json"}
        r = await admin.patch("/api/v1/nodes/edge-1", headers=merge, content=json.dumps({"metadata": {"labels": {"site": "plant-7"}}}))
        assert r.status_code == 200, r.text
        r = await admin.patch("/api/v1/namespaces/default/pods/web", headers=merge, content=json.dumps({"metadata": {"labels": {"x": "y"}}}))
        assert r.status_code == 403
    # kubectl with `edgebus kubeconfig --node edge-1` (the lab names the token file in lab.json)
    lab = tmp_path / "lab"
    lab.mkdir()
    node = {"metaserver": edge.meta, "admin_token_file": str(edge.admin_token_file), "metaserver_ca_file": str(edge.creds.ca.public)}
    (lab / "lab.json").write_text(json.dumps({"nodes": {"edge-1": node}}))
    cfg = yaml.safe_load(render(None, str(lab), "edge-1"))
    assert cfg["users"][0]["user"] == {"token": admin_token} and cfg["clusters"][0]["cluster"]["certificate-authority-data"]
    k = Kubectl(tmp_path / "k", "edge-1", edge.meta, token=admin_token)
    (tmp_path / "k" / "edge-1.kubeconfig").write_text(yaml.safe_dump(cfg))
    out = await asyncio.to_thread(k.out, "get", "pods")
    assert "web" in out


async def test_service_account_tokens_offline(edge: Edge) -> None:
    async with edge.cloud() as cloud:
        assert (await cloud.post("/api/v1/namespaces/default/serviceaccounts", json={"metadata": {"name": "reader"}})).status_code == 201
        r = await cloud.post("/api/v1/namespaces/default/serviceaccounts/reader/token", json={"spec": {"expirationSeconds": 3600}})
        token = r.json()["status"]["token"]
        await cloud.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "cfg"}, "data": {"a": "1"}})
        pod = {"metadata": {"name": "web"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "v", "configMap": {"name": "cfg"}}]}}
        assert (await cloud.post("/api/v1/namespaces/default/pods", json=pod)).status_code == 201
        async with edge.client(token) as sa:
            # (until every RBAC object reached the node, the answer also names the roles it lacks)
            forbidden = 'pods is forbidden: User "system:serviceaccount:default:reader" cannot list resource "pods" in API group "" in the namespace "default"'
            await eventually(lambda: _message(sa, "/api/v1/namespaces/default/pods", 403, forbidden), timeout=15, msg="the node's RBAC objects: nothing for the ServiceAccount")
            r = await sa.get("/api/v1/namespaces/default/pods/web/log")
            assert r.status_code == 403 and r.json()["message"].startswith(
                'pods "web" is forbidden: User "system:serviceaccount:default:reader" cannot get resource "pods/log" in API group "" in the namespace "default"'
            ), r.text
            rb = {"metadata": {"name": "reader-edit"}, "roleRef": {"kind": "ClusterRole", "name": "edit"}, "subjects": [{"kind": "ServiceAccount", "name": "reader"}]}
            assert (await cloud.post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", json=rb)).status_code == 201
            await eventually(lambda: _status(sa, "/api/v1/namespaces/default/pods/web", 200), timeout=15, msg="the binding reaches the node")
            assert (await sa.get("/api/v1/namespaces/kube-system/configmaps")).status_code == 403, "edit is bound in default only"
            # get on pods/log is granted now: the node's edged is asked (none runs here)
            r = await sa.get("/api/v1/namespaces/default/pods/web/log")
            assert r.status_code == 503 and r.json()["message"] == "the edged of node edge-1 does not answer (stopped or starting)", r.text
            # allowed by RBAC on the node, then forwarded as the node: the Node authorizer says no
            r = await sa.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "from-edge"}})
            assert r.status_code == 403 and 'User "system:node:edge-1"' in r.json()["message"]
            # offline: the token and the bindings are checked on the node alone
            assert edge.leaf.proxy is not None
            edge.leaf.proxy.cut()
            try:
                r = await sa.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "offline"}})
                # 503 at once when the leaf knows the link is down; 504 if the cut is that recent
                assert r.status_code in (503, 504) and "writes need the cloud" in r.json()["message"]
                assert (await sa.get("/api/v1/namespaces/default/configmaps/cfg")).status_code == 200
                assert (await sa.get("/api/v1/namespaces/kube-system/configmaps")).status_code == 403
            finally:
                edge.leaf.proxy.heal()
            # the binding goes: so does the access on the node
            await cloud.delete("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/reader-edit")
            await eventually(lambda: _status(sa, "/api/v1/namespaces/default/pods/web", 403), timeout=20, msg="the deleted binding reaches the node")


def test_kubeconfig_carries_the_cloud_credentials(tmp_path: Path) -> None:
    creds = make_credentials(tmp_path / "c")
    tok = tmp_path / "admin.token"
    tok.write_text(creds.admin_token + "\n")
    (tmp_path / "lab.json").write_text(json.dumps({"apiserver": "https://127.0.0.1:1", "api_token_file": str(tok), "api_ca_file": str(creds.ca.public)}))
    cfg: dict[str, Any] = yaml.safe_load(render(None, str(tmp_path), None))
    assert cfg["users"][0]["user"]["token"] == creds.admin_token
    assert cfg["clusters"][0]["cluster"]["certificate-authority-data"] and cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"


async def test_read_your_writes_through_the_node(edge: Edge) -> None:
    """What the node writes through its metaserver and the cloud accepts is on the node at
    once (get, list), without the cloud routing it there; what the cloud refuses, a dry run
    and a delete leave nothing; the local resourceVersion works for an update."""
    admin_token = edge.admin_token_file.read_text().strip()
    path = "/api/v1/namespaces/default/configmaps"
    async with edge.client(admin_token) as admin, edge.cloud() as cloud:
        await eventually(lambda: _status(admin, path, 200), timeout=15, msg="the metaserver up")
        r = await admin.post(path, json={"metadata": {"name": "mine"}, "data": {"a": "1"}})
        assert r.status_code == 403, r.text  # RBAC grants a node no ConfigMaps
        assert (await admin.get(f"{path}/mine")).status_code == 404
        rb = {"metadata": {"name": "node-edit"}, "roleRef": {"kind": "ClusterRole", "name": "edit"}, "subjects": [{"kind": "User", "name": "system:node:edge-1"}]}
        assert (await cloud.post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", json=rb)).status_code == 201

        async def created() -> httpx.Response | None:
            r = await admin.post(path, json={"metadata": {"name": "mine"}, "data": {"a": "1"}})
            return r if r.status_code == 201 else None

        async with admin.stream("GET", path, params={"watch": "1", "timeoutSeconds": "20"}) as watch:
            lines = watch.aiter_lines()
            r = await eventually(created, timeout=15, msg="the binding in the cloud's authorizer")
            ev = json.loads(await asyncio.wait_for(anext(lines), 10))
            assert (ev["type"], ev["object"]["metadata"]["name"], ev["object"]["data"]) == ("ADDED", "mine", {"a": "1"})
        cloud_rv = r.json()["metadata"]["resourceVersion"]
        # at once, not eventually: the node kept the cloud's answer
        got = await admin.get(f"{path}/mine")
        assert got.status_code == 200 and got.json()["data"] == {"a": "1"}
        local_rv = got.json()["metadata"]["resourceVersion"]
        assert "mine" in [i["metadata"]["name"] for i in (await admin.get(path)).json()["items"]]
        # an update with the node's local resourceVersion (translated to the cloud's)
        upd = {**got.json(), "data": {"a": "2"}}
        r = await admin.put(f"{path}/mine", json=upd)
        assert r.status_code == 200, r.text
        assert int(r.json()["metadata"]["resourceVersion"]) > int(cloud_rv)
        assert (await admin.get(f"{path}/mine")).json()["data"] == {"a": "2"}
        assert int((await admin.get(f"{path}/mine")).json()["metadata"]["resourceVersion"]) > int(local_rv)
        assert (await cloud.get(f"{path}/mine")).json()["data"] == {"a": "2"}
        # refused by the cloud (an invalid name), a dry run: nothing on the node
        r = await admin.post(path, json={"metadata": {"name": "Bad_Name"}})
        assert r.status_code == 422, r.text
        r = await admin.post(path, params={"dryRun": "All"}, json={"metadata": {"name": "dry"}})
        assert r.status_code == 201, r.text
        assert (await admin.get(f"{path}/dry")).status_code == 404
        assert (await cloud.get(f"{path}/dry")).status_code == 404
        names_ = [i["metadata"]["name"] for i in (await admin.get(path)).json()["items"]]
        assert "Bad_Name" not in names_ and "dry" not in names_
        # a dry-run delete keeps it; a delete removes it, at once
        r = await admin.request("DELETE", f"{path}/mine", json={"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]})
        assert r.status_code == 200, r.text
        assert (await admin.get(f"{path}/mine")).status_code == 200
        r = await admin.delete(f"{path}/mine")
        assert r.status_code == 200, r.text
        assert (await admin.get(f"{path}/mine")).status_code == 404
        assert "mine" not in [i["metadata"]["name"] for i in (await admin.get(path)).json()["items"]]
        assert (await cloud.get(f"{path}/mine")).status_code == 404
        # a newer version made in the cloud replaces the kept copy once it comes down (here: a
        # pod of the node uses the ConfigMap, so the cloud routes it to the node)
        r = await admin.post(path, json={"metadata": {"name": "shared"}, "data": {"v": "node"}})
        assert r.status_code == 201, r.text
        cur = (await cloud.get(f"{path}/shared")).json()
        assert (await cloud.put(f"{path}/shared", json={**cur, "data": {"v": "cloud"}})).status_code == 200
        pod = {"metadata": {"name": "user"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "v", "configMap": {"name": "shared"}}]}}
        assert (await cloud.post("/api/v1/namespaces/default/pods", json=pod)).status_code == 201

        async def cloud_version() -> bool:
            return (await admin.get(f"{path}/shared")).json()["data"] == {"v": "cloud"}

        await eventually(cloud_version, timeout=20, msg="the cloud's newer version on the node")
