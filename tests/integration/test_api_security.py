"""API security against a real apiserver (HTTPS, bearer tokens, RBAC) on a real nats-server,
driven with the real kubectl 1.27 and 1.33 and raw HTTP: 401/403 bodies and what kubectl
prints, the RBAC matrix, can-i, create role/rolebinding/token, whoami, escalation, Pod
Security, Origin, and the Node authorizer over each node's NATS API subject."""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from edgebus import names
from edgebus.bus import Bus, RemoteError
from edgebus.envelope import Envelope
from edgebus.natsd import free_port
from edgebus.objects import NODES, PODS, SECRETS
from edgebus.objectstore import ObjectStore
from edgebus.runtime import NatsSettings
from edgebus.testing.security import ApiCredentials, make_credentials
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from services.apiserver.config import ApiServerSettings, Settings
from services.apiserver.service import build
from tests.e2e.kubectl import Kubectl, versioned_kubectls

KUBECTLS = versioned_kubectls()
VERSIONS = [v for v in ("1.27", "1.33") if v in KUBECTLS]
needs_kubectl = pytest.mark.skipif(not VERSIONS, reason="kubectl 1.27 / 1.33 are not installed")

UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


@dataclass
class Secure:
    url: str
    creds: ApiCredentials
    tmp: Path
    store: ObjectStore
    bus: Bus

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        ctx = ssl.create_default_context(cadata=self.creds.ca_pem.decode())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, verify=ctx, headers=headers, timeout=10)

    def kubectl(self, name: str, token: str | None, version: str = "1.33") -> Kubectl:
        return Kubectl(self.tmp / "kubectl", f"{name}-{version}", self.url, KUBECTLS.get(version), token=token, ca_pem=self.creds.ca_pem)


async def _kubectl(k: Kubectl, *args: str, stdin: str | None = None, check: bool = True) -> Any:
    """kubectl in a thread: the apiserver answers on this test's event loop."""
    return await asyncio.to_thread(k.run, *args, stdin=stdin, check=check)


async def _start(hub: Hub, tmp: Path, *, tls: bool = True, **api: Any) -> tuple[Any, str, ApiCredentials]:
    creds = make_credentials(tmp / "creds")
    port = free_port()
    svc = build(Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port, **creds.apiserver_settings(tls=tls), **api)))
    await svc.start()
    await eventually(lambda: svc.ready()["ok"], timeout=15, msg="apiserver ready")
    return svc, f"{'https' if tls else 'http'}://127.0.0.1:{port}", creds


@pytest.fixture
async def secure(hub: Hub, tmp_path: Path) -> AsyncIterator[Secure]:
    svc, url, creds = await _start(hub, tmp_path)
    bus = hub.bus("test")
    await bus.connect(retry_for=5)
    try:
        yield Secure(url, creds, tmp_path, ObjectStore(bus), bus)
    finally:
        await bus.close()
        await asyncio.wait_for(svc.stop(), 15)


async def _yes(k: Kubectl, *args: str) -> bool:
    """``kubectl auth can-i ...`` says yes."""
    return (await _kubectl(k, "auth", "can-i", *args, check=False)).stdout.strip() == "yes"


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def pod(name: str, node: str | None = None, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    if node:
        s["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": s}


# -- authentication ------------------------------------------------------------------------


async def test_unauthenticated_requests_get_kubernetes_401(secure: Secure) -> None:
    async with secure.client() as anon, secure.client("not-a-token") as bad, secure.client(secure.creds.user_token("jane")) as jane:
        for c in (anon, bad):
            r = await c.get("/api/v1/namespaces/default/pods")
            assert r.status_code == 401 and r.json() == UNAUTHORIZED and r.headers["content-type"] == "application/json"
        assert (await anon.get("/api")).status_code == 401, "discovery needs credentials"
        # public info stays public (system:public-info-viewer is bound to system:unauthenticated)
        assert (await anon.get("/healthz")).status_code == 200 and (await anon.get("/version")).json()["major"] == "1"
        assert (await bad.get("/healthz")).status_code == 401, "a bad token is refused everywhere"
        # an authenticated user sees discovery but not /metrics
        assert (await jane.get("/api/v1")).status_code == 200
        r = await jane.get("/metrics")
        assert r.status_code == 403 and r.json()["message"] == 'forbidden: User "jane" cannot get path "/metrics"'
        r = await jane.get("/api/v1/namespaces/default/pods", headers={"Impersonate-User": "edgebus-admin"})
        assert r.status_code == 403 and "impersonation" in r.json()["message"]
        expired = secure.creds.user_token("jane", ttl=-300)
        r = await anon.get("/api/v1/pods", headers={"Authorization": f"Bearer {expired}"})
        assert r.status_code == 401


@needs_kubectl
@pytest.mark.parametrize("version", VERSIONS)
async def test_kubectl_prints_what_it_prints_against_kubernetes(secure: Secure, hub: Hub, tmp_path: Path, version: str) -> None:
    bad = secure.kubectl("bad", "garbage", version)
    err = (await _kubectl(bad, "get", "pods", check=False)).stderr
    assert _last_line(err) == "error: You must be logged in to the server (the server has asked for the client to provide credentials)", err
    if version != "1.27":  # whoami reads the Status body itself (kubectl 1.28+)
        assert _last_line((await _kubectl(bad, "auth", "whoami", check=False)).stderr) == "error: You must be logged in to the server (Unauthorized)"
    jane = secure.kubectl("jane", secure.creds.user_token("jane"), version)
    err = (await _kubectl(jane, "delete", "pod", "web", check=False)).stderr
    assert _last_line(err) == 'Error from server (Forbidden): pods "web" is forbidden: User "jane" cannot delete resource "pods" in API group "" in the namespace "default"'
    err = (await _kubectl(jane, "get", "nodes", check=False)).stderr
    assert _last_line(err) == 'Error from server (Forbidden): nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope'
    # no credentials at all: kubectl sends none over plain HTTP (and would prompt for a password over HTTPS)
    svc, url, _ = await _start(hub, tmp_path / "plain", tls=False)
    try:
        anon = Kubectl(tmp_path / "k", f"anon-{version}", url, KUBECTLS[version])
        err = (await _kubectl(anon, "get", "pods", check=False)).stderr
        assert _last_line(err) == "error: You must be logged in to the server (the server has asked for the client to provide credentials)", err
    finally:
        await svc.stop()


# -- RBAC with kubectl ---------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("version", VERSIONS)
async def test_rbac_matrix_with_kubectl(secure: Secure, version: str) -> None:
    admin = secure.kubectl("admin", secure.creds.admin_token, version)
    jane = secure.kubectl("jane", secure.creds.user_token("jane", "dev"), version)
    await _kubectl(admin, "create", "configmap", "app", "--from-literal=k=v")
    await _kubectl(admin, "apply", "-f", "-", stdin=json.dumps(pod("web")))
    # a read-only user: list yes, delete no
    assert (await _kubectl(jane, "auth", "can-i", "list", "pods", check=False)).stdout.strip() == "no"
    await _kubectl(admin, "create", "rolebinding", "jane-view", "--clusterrole=view", "--user=jane")
    await eventually(lambda: _yes(jane, "list", "pods"), timeout=10, msg="the binding takes effect")
    assert "web" in (await _kubectl(jane, "get", "pods")).stdout
    cp = await _kubectl(jane, "delete", "pod", "web", check=False)
    assert cp.returncode != 0 and 'User "jane" cannot delete resource "pods" in API group "" in the namespace "default"' in cp.stderr
    assert "web" in (await _kubectl(admin, "get", "pods")).stdout, "nothing was deleted"
    can = {(v, r): (await _kubectl(jane, "auth", "can-i", v, r, check=False)) for v, r in (("get", "pods"), ("delete", "pods"), ("get", "secrets"), ("list", "configmaps"), ("get", "pods"))}
    assert {k: (c.stdout.strip(), c.returncode) for k, c in can.items()} == {
        ("get", "pods"): ("yes", 0),
        ("delete", "pods"): ("no", 1),
        ("get", "secrets"): ("no", 1),
        ("list", "configmaps"): ("yes", 0),
    }
    assert (await _kubectl(jane, "auth", "can-i", "list", "pods", "-n", "kube-system", check=False)).stdout.strip() == "no"
    assert (await _kubectl(admin, "auth", "can-i", "*", "*")).stdout.strip() == "yes"
    # --list: the rules of the view role in default, and the defaults every user has
    rows = (await _kubectl(jane, "auth", "can-i", "--list")).stdout.splitlines()
    assert rows[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    table = {c[0]: c[-1] for c in (re.split(r"\s{2,}", r.strip()) for r in rows[1:] if r.strip() and not r.startswith(" "))}
    assert table["pods"] == "[get list watch]" and table["selfsubjectaccessreviews.authorization.k8s.io"] == "[create]"
    assert "secrets" not in table and any("[/healthz]" in r for r in rows)
    # kubectl create role / rolebinding (a typed client: protobuf bodies from 1.31 on)
    await _kubectl(admin, "create", "role", "cm-writer", "--verb=get,patch", "--resource=configmaps", "--resource-name=app")
    await _kubectl(admin, "create", "rolebinding", "jane-cm", "--role=cm-writer", "--user=jane")
    role = (await _kubectl(admin, "get", "role", "cm-writer", "-o", "json")).stdout
    assert json.loads(role)["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["app"], "verbs": ["get", "patch"]}]
    rb = json.loads((await _kubectl(admin, "get", "rolebinding", "jane-cm", "-o", "json")).stdout)
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-writer"} and rb["subjects"][0]["name"] == "jane"
    assert (await _kubectl(jane, "auth", "can-i", "patch", "configmap/app", check=False)).stdout.strip() == "yes"
    assert (await _kubectl(jane, "auth", "can-i", "patch", "configmap/other", check=False)).stdout.strip() == "no"
    await _kubectl(jane, "label", "configmap", "app", "edited=yes")
    assert "not allowed" not in (await _kubectl(admin, "get", "configmap", "app", "--show-labels")).stdout
    assert "edited=yes" in (await _kubectl(admin, "get", "configmap", "app", "--show-labels")).stdout
    header = (await _kubectl(admin, "get", "rolebindings", "-o", "wide")).stdout.splitlines()[0].split()
    assert header == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert (await _kubectl(admin, "get", "clusterroles")).stdout.splitlines()[0].split() == ["NAME", "CREATED", "AT"]


@needs_kubectl
async def test_create_token_and_whoami(secure: Secure) -> None:
    version = VERSIONS[-1]
    admin = secure.kubectl("admin", secure.creds.admin_token, version)
    await _kubectl(admin, "create", "namespace", "ci")

    async def sa_exists() -> bool:
        return (await _kubectl(admin, "get", "serviceaccount", "default", "-n", "ci", check=False)).returncode == 0

    await eventually(sa_exists, timeout=10, msg="the default ServiceAccount of a new namespace")
    await _kubectl(admin, "create", "serviceaccount", "builder", "-n", "ci")
    token = (await _kubectl(admin, "create", "token", "builder", "-n", "ci", "--duration=15m")).stdout.strip()
    sa = secure.kubectl("builder", token, version)
    who = (await _kubectl(sa, "auth", "whoami")).stdout
    assert "system:serviceaccount:ci:builder" in who and "[system:serviceaccounts system:serviceaccounts:ci system:authenticated]" in who
    cp = await _kubectl(sa, "get", "pods", "-n", "ci", check=False)
    assert 'User "system:serviceaccount:ci:builder" cannot list resource "pods" in API group "" in the namespace "ci"' in cp.stderr
    await _kubectl(admin, "create", "rolebinding", "builder-edit", "--clusterrole=edit", "--serviceaccount=ci:builder", "-n", "ci")
    await eventually(lambda: _yes(sa, "create", "configmaps", "-n", "ci"), timeout=10, msg="the binding takes effect")
    await _kubectl(sa, "create", "configmap", "built", "-n", "ci", "--from-literal=a=b")
    assert (await _kubectl(sa, "auth", "can-i", "create", "configmaps", "-n", "default", check=False)).stdout.strip() == "no"
    err = (await _kubectl(admin, "create", "token", "builder", "-n", "ci", "--duration=1m", check=False)).stderr
    assert "may not specify a duration less than 10 minutes" in err
    # deleting the ServiceAccount kills its tokens, also once one of the same name is back
    await _kubectl(admin, "delete", "serviceaccount", "builder", "-n", "ci")
    await _kubectl(admin, "create", "serviceaccount", "builder", "-n", "ci")

    async def refused() -> bool:
        async with secure.client(token) as c:
            return (await c.get("/api/v1/namespaces/ci/configmaps")).status_code == 401

    await eventually(refused, timeout=10, msg="the token of a deleted ServiceAccount refused")


async def test_reviews_and_token_request_over_http(secure: Secure) -> None:
    jane_token = secure.creds.user_token("jane", "dev")
    async with secure.client(secure.creds.admin_token) as admin, secure.client(jane_token) as jane:
        r = await jane.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert r.status_code == 201 and r.json()["status"]["userInfo"]["username"] == "jane"
        assert r.json()["status"]["userInfo"]["groups"] == ["dev", "system:authenticated"]
        sar = {"spec": {"user": "jane", "groups": ["dev"], "resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}}}
        r = await jane.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar)
        assert r.status_code == 403, "reviewing others is for admins"
        r = await admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar)
        assert r.status_code == 201 and r.json()["status"]["allowed"] is False
        sar["spec"]["groups"] = ["system:masters"]
        assert (await admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar)).json()["status"]["allowed"] is True
        r = await jane.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", json={"spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}})
        assert r.json()["status"]["allowed"] is True
        # a token bound to a pod carries it; a pod that is not there is a 404
        await secure.store.create(PODS, pod("web"), namespace="default")
        await eventually(lambda: _sa_ready(admin), timeout=10, msg="default ServiceAccount")
        tr = {"spec": {"expirationSeconds": 3600, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}, "audiences": ["https://kubernetes.default.svc.cluster.local"]}}
        r = await admin.post("/api/v1/namespaces/default/serviceaccounts/default/token", json=tr)
        assert r.status_code == 201, r.text
        async with secure.client(r.json()["status"]["token"]) as bound:
            who = (await bound.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", json={})).json()["status"]["userInfo"]
            assert who["extra"]["authentication.kubernetes.io/pod-name"] == ["web"]
        tr["spec"]["boundObjectRef"]["name"] = "nope"
        assert (await admin.post("/api/v1/namespaces/default/serviceaccounts/default/token", json=tr)).status_code == 404
        r = await jane.post("/api/v1/namespaces/default/serviceaccounts/default/token", json={})
        assert r.status_code == 403 and 'cannot create resource "serviceaccounts/token"' in r.json()["message"]


async def _sa_ready(c: httpx.AsyncClient) -> bool:
    return (await c.get("/api/v1/namespaces/default/serviceaccounts/default")).status_code == 200


async def test_rbac_escalation_is_refused(secure: Secure) -> None:
    async with secure.client(secure.creds.admin_token) as admin, secure.client(secure.creds.user_token("ann")) as ann:
        await admin.post("/api/v1/namespaces", json={"metadata": {"name": "team"}})
        rb = {"metadata": {"name": "ann-admin"}, "roleRef": {"kind": "ClusterRole", "name": "admin"}, "subjects": [{"kind": "User", "name": "ann"}]}
        assert (await admin.post("/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", json=rb)).status_code == 201
        roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles"

        async def may_create_roles() -> bool:
            return (await ann.post(roles, json={"metadata": {"name": "readers"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})).status_code == 201

        await eventually(may_create_roles, timeout=10, msg="a namespace admin creates a Role within its own permissions")
        r = await ann.post(roles, json={"metadata": {"name": "nodes"}, "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]})
        assert r.status_code == 403 and r.json()["message"] == (
            'roles.rbac.authorization.k8s.io "nodes" is forbidden: user "ann" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}'
        )
        escalate = {"metadata": {"name": "me-root"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "ann"}]}
        r = await ann.post("/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", json=escalate)
        assert r.status_code == 403 and "attempting to grant RBAC permissions not currently held" in r.json()["message"]
        ok = {"metadata": {"name": "bob-view"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "bob"}]}
        assert (await ann.post("/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", json=ok)).status_code == 201
        assert (await ann.post("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json=ok)).status_code == 403


# -- Pod Security ----------------------------------------------------------------------------


@needs_kubectl
async def test_pod_security_levels(secure: Secure) -> None:
    admin = secure.kubectl("admin", secure.creds.admin_token, VERSIONS[-1])
    hostpath = pod("h", volumes=[{"name": "host", "hostPath": {"path": "/"}}])
    hostpath["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    err = (await _kubectl(admin, "create", "-f", "-", stdin=json.dumps(hostpath), check=False)).stderr
    assert _last_line(err) == (
        'Error from server (Forbidden): error when creating "STDIN": pods "h" is forbidden: violates PodSecurity "baseline:latest": '
        'privileged (container "c" must not set securityContext.privileged=true), hostPath volumes (volume "host")'
    )
    await _kubectl(admin, "create", "namespace", "plant")
    await _kubectl(admin, "label", "namespace", "plant", "pod-security.kubernetes.io/enforce=privileged")
    await _kubectl(admin, "create", "-n", "plant", "-f", "-", stdin=json.dumps(hostpath))
    await _kubectl(admin, "create", "namespace", "strict")
    await _kubectl(admin, "label", "namespace", "strict", "pod-security.kubernetes.io/enforce=restricted")
    err = (await _kubectl(admin, "create", "-n", "strict", "-f", "-", stdin=json.dumps(pod("plain")), check=False)).stderr
    assert 'violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false' in err
    await _kubectl(admin, "create", "-f", "-", stdin=json.dumps(pod("plain")))  # baseline allows it
    # a spec change is judged too
    err = (await _kubectl(admin, "patch", "pod", "plain", "--type=json", "-p", '[{"op":"add","path":"/spec/hostNetwork","value":true}]', check=False)).stderr
    assert "host namespaces (hostNetwork=true)" in err


@needs_kubectl
async def test_pod_security_holds_for_workload_templates(secure: Secure) -> None:
    """The workload controllers write pods to the store themselves: a Deployment (or a
    CronJob) whose template breaks the namespace's level is refused when it is written."""
    admin = secure.kubectl("admin", secure.creds.admin_token, VERSIONS[-1])
    tpl = pod("t", volumes=[{"name": "host", "hostPath": {"path": "/"}}])
    template = {"metadata": {"labels": {"app": "x"}}, "spec": tpl["spec"]}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "sneaky"}, "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template}}
    err = (await _kubectl(admin, "create", "-f", "-", stdin=json.dumps(dep), check=False)).stderr
    assert 'deployments "sneaky" is forbidden: spec.template violates PodSecurity "baseline:latest": hostPath volumes (volume "host")' in err
    job_tpl = {"metadata": {}, "spec": {**tpl["spec"], "restartPolicy": "Never"}}
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"}, "spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": job_tpl}}}}
    err = (await _kubectl(admin, "create", "-f", "-", stdin=json.dumps(cj), check=False)).stderr
    assert 'spec.jobTemplate.spec.template violates PodSecurity "baseline:latest"' in err
    dep["spec"]["template"]["spec"] = pod("t")["spec"]
    await _kubectl(admin, "create", "-f", "-", stdin=json.dumps(dep))  # a plain template passes


# -- streaming routes: Origin --------------------------------------------------------------


async def test_cross_origin_streaming_is_refused(secure: Secure) -> None:
    ws_url = secure.url.replace("https://", "wss://") + "/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true"
    ctx = ssl.create_default_context(cadata=secure.creds.ca_pem.decode())
    headers = {"Authorization": f"Bearer {secure.creds.admin_token}"}
    with pytest.raises(websockets.InvalidStatus) as ei:
        async with websockets.connect(ws_url, ssl=ctx, subprotocols=["v5.channel.k8s.io"], additional_headers=headers, origin="https://evil.example"):
            pass
    assert ei.value.response.status_code == 403 and b"cross-origin request refused" in ei.value.response.body
    # no Origin (kubectl): through the guard, to the route (which reports the missing pod in the stream)
    async with websockets.connect(ws_url, ssl=ctx, subprotocols=["v5.channel.k8s.io"], additional_headers=headers) as ws:
        msg = await ws.recv()
        assert msg[0] == 3 and json.loads(msg[1:])["reason"] == "NotFound"
    with pytest.raises(websockets.InvalidStatus) as ei:
        async with websockets.connect(ws_url, ssl=ctx, subprotocols=["v5.channel.k8s.io"]):
            pass
    assert ei.value.response.status_code == 401
    async with secure.client(secure.creds.admin_token) as admin:
        r = await admin.get("/api/v1/namespaces/default/pods/web/log", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        r = await admin.get("/api/v1/namespaces/default/pods/web/log")
        assert r.status_code == 404


# -- the Node authorizer over NATS -------------------------------------------------------------


async def _as_node(bus: Bus, node: str, method: str, path: str, body: Any = None, ctype: str = "application/json") -> tuple[int, Any]:
    req: dict[str, Any] = {"method": method, "path": path, "headers": {"content-type": ctype}}
    if body is not None:
        req["body"] = json.dumps(body).encode()
    out = (await bus.call(names.api_node_subject(node), Envelope.new(source="test", operation="request", content=req), timeout=10)).content
    return out["status"], json.loads(out["body"] or b"{}")


async def test_node_authorizer_over_nats(secure: Secure) -> None:
    store, bus = secure.store, secure.bus
    for n in ("edge-1", "edge-2"):
        await store.create(NODES, {"metadata": {"name": n}})
    await store.create(SECRETS, {"metadata": {"name": "a-only"}, "stringData": {"k": "a"}}, namespace="default")
    await store.create(SECRETS, {"metadata": {"name": "b-only"}, "stringData": {"k": "b"}}, namespace="default")
    pa = pod("on-a", "edge-1", volumes=[{"name": "s", "secret": {"secretName": "a-only"}}])
    await store.create(PODS, pa, namespace="default")
    await store.create(PODS, pod("on-b", "edge-2", volumes=[{"name": "s", "secret": {"secretName": "b-only"}}]), namespace="default")
    sec = "/api/v1/namespaces/default/secrets"

    async def reads_own() -> bool:
        return (await _as_node(bus, "edge-1", "GET", f"{sec}/a-only"))[0] == 200

    await eventually(reads_own, timeout=10, msg="node A reads the Secret its pod uses")
    code, body = await _as_node(bus, "edge-1", "GET", f"{sec}/b-only")
    assert code == 403 and body["message"] == (
        'secrets "b-only" is forbidden: User "system:node:edge-1" cannot get resource "secrets" in API group "" in the namespace "default": '
        "no relationship found between node 'edge-1' and this object"
    )
    assert (await _as_node(bus, "edge-1", "GET", sec))[0] == 403, "no list of secrets"
    assert (await _as_node(bus, "edge-2", "GET", f"{sec}/b-only"))[0] == 200
    # status: its own node and pods only
    before = await store.get(NODES, None, "edge-2")
    patch = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    code, body = await _as_node(bus, "edge-1", "PATCH", "/api/v1/nodes/edge-2/status", patch, "application/merge-patch+json")
    assert code == 403 and 'User "system:node:edge-1" cannot patch resource "nodes/status"' in body["message"]
    assert (await store.get(NODES, None, "edge-2"))["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "node B unchanged"
    assert (await _as_node(bus, "edge-1", "PATCH", "/api/v1/nodes/edge-1/status", patch, "application/merge-patch+json"))[0] == 200
    st = {"status": {"phase": "Running"}}
    assert (await _as_node(bus, "edge-1", "PATCH", "/api/v1/namespaces/default/pods/on-a/status", st, "application/merge-patch+json"))[0] == 200
    assert (await _as_node(bus, "edge-1", "PATCH", "/api/v1/namespaces/default/pods/on-b/status", st, "application/merge-patch+json"))[0] == 403
    assert (await _as_node(bus, "edge-1", "DELETE", "/api/v1/namespaces/default/pods/on-b"))[0] == 403
    code, _ = await _as_node(bus, "edge-1", "POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "sneaky"}})
    assert code == 403
    ev = {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "on-a", "namespace": "default"}, "reason": "Started", "message": "m"}
    assert (await _as_node(bus, "edge-1", "POST", "/api/v1/namespaces/default/events", ev))[0] == 201
    # a credential in the forwarded request changes nothing: the subject is the identity
    req = {"method": "GET", "path": f"{sec}/b-only", "headers": {"authorization": f"Bearer {secure.creds.admin_token}"}}
    out = (await bus.call(names.api_node_subject("edge-1"), Envelope.new(source="t", operation="request", content=req), timeout=10)).content
    assert out["status"] == 403
    # the pod leaves node A: so does its Secret
    await store.delete(PODS, "default", "on-a", grace_period_seconds=0)

    async def cut_off() -> bool:
        return (await _as_node(bus, "edge-1", "GET", f"{sec}/a-only"))[0] == 403

    await eventually(cut_off, timeout=10, msg="the Secret of a pod that left the node")
    with pytest.raises(RemoteError):
        await bus.call("edgebus.api.node.Not_A_Node", Envelope.new(source="t", operation="request", content={"method": "GET", "path": "/api/v1/pods"}), timeout=5)


async def test_websocket_exec_needs_create_as_well_as_get(secure: Secure) -> None:
    """A websocket upgrade is a GET; as kube-apiserver (1.31+) does, exec/attach/portforward
    also need ``create`` on the subresource (SPDY's POST needs just that)."""
    from edgebus.objects.resources import ROLEBINDINGS, ROLES

    await secure.store.create(ROLES, {"metadata": {"name": "exec-get"}, "rules": [{"apiGroups": [""], "resources": ["pods", "pods/exec"], "verbs": ["get"]}]}, namespace="default")
    await secure.store.create(ROLES, {"metadata": {"name": "exec-create"}, "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}, namespace="default")
    binding = {"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "exec-get"}, "subjects": [{"kind": "User", "name": "ann", "apiGroup": "rbac.authorization.k8s.io"}]}
    await secure.store.create(ROLEBINDINGS, {"metadata": {"name": "ann-get"}, **binding}, namespace="default")
    ws_url = secure.url.replace("https://", "wss://") + "/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true"
    ctx = ssl.create_default_context(cadata=secure.creds.ca_pem.decode())
    headers = {"Authorization": f"Bearer {secure.creds.user_token('ann', 'dev')}"}

    async def refused() -> bytes | None:
        try:
            async with websockets.connect(ws_url, ssl=ctx, subprotocols=["v5.channel.k8s.io"], additional_headers=headers):
                return None
        except websockets.InvalidStatus as exc:
            body = exc.response.body or b""
            # until the binding is seen, "get" is refused too; then only "create" is
            return body if exc.response.status_code == 403 and b"cannot create resource" in body else None

    body = await eventually(refused, timeout=10, msg="get alone is not enough")
    assert b'pods/exec' in body
    binding["roleRef"]["name"] = "exec-create"
    await secure.store.create(ROLEBINDINGS, {"metadata": {"name": "ann-create"}, **binding}, namespace="default")

    async def let_through() -> bool:
        try:
            async with websockets.connect(ws_url, ssl=ctx, subprotocols=["v5.channel.k8s.io"], additional_headers=headers) as ws:
                msg = await ws.recv()
                return msg[0] == 3 and json.loads(msg[1:])["reason"] == "NotFound"
        except websockets.InvalidStatus:
            return False

    await eventually(let_through, timeout=10, msg="get and create: through to the route")
