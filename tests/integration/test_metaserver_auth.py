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
            await eventually(lambda: _status(sa, "/api/v1/namespaces/default/pods", 403), timeout=15, msg="the node's RBAC objects: nothing for the ServiceAccount")
            r = await sa.get("/api/v1/namespaces/default/pods")
            assert r.json()["message"] == 'pods is forbidden: User "system:serviceaccount:default:reader" cannot list resource "pods" in API group "" in the namespace "default"'
            rb = {"metadata": {"name": "reader-edit"}, "roleRef": {"kind": "ClusterRole", "name": "edit"}, "subjects": [{"kind": "ServiceAccount", "name": "reader"}]}
            assert (await cloud.post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", json=rb)).status_code == 201
            await eventually(lambda: _status(sa, "/api/v1/namespaces/default/pods/web", 200), timeout=15, msg="the binding reaches the node")
            assert (await sa.get("/api/v1/namespaces/kube-system/configmaps")).status_code == 403, "edit is bound in default only"
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
