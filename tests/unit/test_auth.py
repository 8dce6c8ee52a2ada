"""edgebus.auth: tokens, request attributes, RBAC evaluation, the Node authorizer, the
default policy and Pod Security Admission (pure logic)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from edgebus.auth import Authorizer, InvalidToken, Issuer, NodeGraph, RbacIndex, Rule, Verifier, forbidden, generate_key_pair, node_user, request_attributes, uncovered
from edgebus.auth import podsecurity, policy
from edgebus.auth.pki import admin_token, ensure_signing_key
from edgebus.auth.user import ANONYMOUS_USER, UserInfo
from edgebus.errors import Forbidden

# -- tokens ----------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    kp = ensure_signing_key(tmp_path)
    assert kp.private.stat().st_mode & 0o777 == 0o600
    return kp.private, kp.public


def test_user_and_service_account_tokens(keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    iss = Issuer.from_file(priv)
    v = Verifier((str(pub),))
    u = v.authenticate(iss.user_token("jane", ["dev", "system:authenticated"]))
    assert u.name == "jane" and u.groups == ("dev", "system:authenticated") and u.uid == ""
    tok, exp = iss.service_account_token("ci", "builder", "uid-1", seconds=600, pod=("web", "pod-uid"))
    claims = jwt.decode(tok, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:ci:builder" and claims["kubernetes.io"]["serviceaccount"] == {"name": "builder", "uid": "uid-1"}
    assert claims["exp"] == exp and claims["nbf"] == claims["iat"] and jwt.get_unverified_header(tok)["kid"] == iss.kid
    sa = v.authenticate(tok)
    assert sa.name == "system:serviceaccount:ci:builder" and sa.uid == "uid-1"
    assert sa.groups == ("system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated")
    assert sa.extra["authentication.kubernetes.io/pod-name"] == ("web",)
    admin = v.authenticate(admin_token(priv))
    assert admin.name == "edgebus-admin" and admin.is_master


def test_bad_tokens_are_refused(keys: tuple[Path, Path], tmp_path: Path) -> None:
    priv, pub = keys
    iss = Issuer.from_file(priv)
    v = Verifier((str(pub),))
    other = tmp_path / "other.key"
    generate_key_pair(other)
    for bad in (
        "not-a-jwt",
        Issuer.from_file(other).user_token("jane"),  # unknown key
        iss.user_token("jane", ttl=-120),  # expired
        Issuer.from_file(priv, issuer="https://elsewhere").user_token("jane"),
        Issuer.from_file(priv, audiences=["other"]).user_token("jane"),
        iss.user_token("system:serviceaccount:ci:builder"),  # an SA name without the SA claims
        jwt.encode({"sub": "jane", "iss": iss.issuer, "aud": list(iss.audiences), "iat": int(time.time())}, "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256"),
    ):
        with pytest.raises(InvalidToken):
            v.authenticate(bad)
    # a token whose signature was tampered with
    tok = iss.user_token("jane")
    head, body, sig = tok.split(".")
    forged = jwt.encode({"sub": "root", "iss": iss.issuer, "aud": list(iss.audiences), "iat": int(time.time()), "groups": ["system:masters"]}, iss.key, algorithm="ES256")
    with pytest.raises(InvalidToken):
        v.authenticate(".".join([head, forged.split(".")[1], sig]))


def test_key_rotation(tmp_path: Path) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    generate_key_pair(old, tmp_path / "old.pub")
    generate_key_pair(new, tmp_path / "new.pub")
    keyfile = tmp_path / "keys.pem"
    keyfile.write_bytes((tmp_path / "old.pub").read_bytes())
    v = Verifier((str(keyfile),), recheck_seconds=0)
    t_old, t_new = Issuer.from_file(old).user_token("a"), Issuer.from_file(new).user_token("b")
    assert v.authenticate(t_old).name == "a"
    with pytest.raises(InvalidToken):
        v.authenticate(t_new)
    keyfile.write_bytes((tmp_path / "old.pub").read_bytes() + (tmp_path / "new.pub").read_bytes())
    assert v.authenticate(t_new).name == "b" and v.authenticate(t_old).name == "a" and len(v.key_ids) == 2
    keyfile.write_bytes((tmp_path / "new.pub").read_bytes() + b"\n")
    with pytest.raises(InvalidToken):
        v.authenticate(t_old)


# -- request attributes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "want"),
    [
        ("GET", "/api/v1/namespaces/default/pods", "", ("list", "", "pods", "", "default", "")),
        ("GET", "/api/v1/namespaces/default/pods", "watch=true", ("watch", "", "pods", "", "default", "")),
        ("GET", "/api/v1/watch/namespaces/default/pods", "", ("watch", "", "pods", "", "default", "")),
        ("GET", "/api/v1/namespaces/default/pods/web/log", "", ("get", "", "pods", "log", "default", "web")),
        ("POST", "/api/v1/namespaces/default/pods", "", ("create", "", "pods", "", "default", "")),
        ("PUT", "/api/v1/nodes/edge-1/status", "", ("update", "", "nodes", "status", "", "edge-1")),
        ("PATCH", "/apis/devices.kubeedge.io/v1beta1/namespaces/d/devices/t/status", "", ("patch", "devices.kubeedge.io", "devices", "status", "d", "t")),
        ("DELETE", "/api/v1/namespaces/default/configmaps", "", ("deletecollection", "", "configmaps", "", "default", "")),
        ("DELETE", "/api/v1/namespaces/default/configmaps/x", "", ("delete", "", "configmaps", "", "default", "x")),
        ("GET", "/api/v1/namespaces/team-a", "", ("get", "", "namespaces", "", "team-a", "team-a")),
        ("PUT", "/api/v1/namespaces/team-a/status", "", ("update", "", "namespaces", "status", "team-a", "team-a")),
        ("POST", "/api/v1/namespaces/ci/serviceaccounts/builder/token", "", ("create", "", "serviceaccounts", "token", "ci", "builder")),
        ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:node", "", ("get", "rbac.authorization.k8s.io", "clusterroles", "", "", "system:node")),
    ],
)
def test_resource_request_attributes(method: str, path: str, query: str, want: tuple[str, ...]) -> None:
    a = request_attributes(method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == want


@pytest.mark.parametrize("path", ["/healthz", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/openapi/v3", "/version"])
def test_non_resource_requests(path: str) -> None:
    a = request_attributes("GET", path)
    assert not a.resource_request and a.verb == "get" and a.path == path


def test_forbidden_messages() -> None:
    def msg(method: str, path: str, user: str = "jane") -> Forbidden:
        return forbidden(user, request_attributes(method, path))

    e = msg("DELETE", "/api/v1/namespaces/default/pods/web")
    assert e.message == 'pods "web" is forbidden: User "jane" cannot delete resource "pods" in API group "" in the namespace "default"'
    assert e.status()["details"] == {"name": "web", "kind": "pods"} and e.code == 403 and e.status()["reason"] == "Forbidden"
    assert msg("GET", "/api/v1/nodes").message == 'nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope'
    e = msg("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/x/roles")
    assert e.message == 'roles.rbac.authorization.k8s.io is forbidden: User "jane" cannot create resource "roles" in API group "rbac.authorization.k8s.io" in the namespace "x"'
    e = msg("GET", "/api/v1/namespaces/default/pods/web/exec")
    assert e.message.startswith('pods "web" is forbidden: User "jane" cannot get resource "pods/exec" in API group ""')
    assert msg("GET", "/api", "system:anonymous").message == 'forbidden: User "system:anonymous" cannot get path "/api"'


# -- RBAC ------------------------------------------------------------------------------


def _role(kind: str, name: str, rules: list[dict[str, Any]], ns: str = "") -> dict[str, Any]:
    md = {"name": name, **({"namespace": ns} if ns else {})}
    return {"kind": kind, "metadata": md, "rules": rules}


def _binding(kind: str, name: str, role_kind: str, role: str, subjects: list[dict[str, Any]], ns: str = "") -> dict[str, Any]:
    md = {"name": name, **({"namespace": ns} if ns else {})}
    return {"kind": kind, "metadata": md, "roleRef": {"kind": role_kind, "name": role}, "subjects": subjects}


@pytest.fixture
def index() -> RbacIndex:
    ix = RbacIndex()
    for r in policy.cluster_roles():
        ix.apply("clusterroles", r)
    for b in policy.cluster_role_bindings():
        ix.apply("clusterrolebindings", b)
    ix.apply("roles", _role("Role", "pod-reader", [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}], "default"))
    ix.apply("roles", _role("Role", "one-cm", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update"], "resourceNames": ["app"]}], "default"))
    ix.apply("rolebindings", _binding("RoleBinding", "jane-reads", "Role", "pod-reader", [{"kind": "User", "name": "jane"}], "default"))
    ix.apply("rolebindings", _binding("RoleBinding", "ci-cm", "Role", "one-cm", [{"kind": "ServiceAccount", "name": "builder"}], "default"))
    ix.apply("clusterrolebindings", _binding("ClusterRoleBinding", "ops-view", "ClusterRole", "view", [{"kind": "Group", "name": "ops"}]))
    return ix


def _can(ix: RbacIndex, user: UserInfo, method: str, path: str, query: str = "") -> bool:
    return Authorizer(ix).authorize(user, request_attributes(method, path, query)).allowed


def test_rbac_matrix(index: RbacIndex) -> None:
    jane = UserInfo("jane", groups=("system:authenticated",))
    sa = UserInfo("system:serviceaccount:default:builder", groups=("system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"))
    ops = UserInfo("olga", groups=("ops", "system:authenticated"))
    pods = "/api/v1/namespaces/default/pods"
    assert _can(index, jane, "GET", pods) and _can(index, jane, "GET", pods, "watch=1") and _can(index, jane, "GET", f"{pods}/web/log")
    assert not _can(index, jane, "DELETE", f"{pods}/web") and not _can(index, jane, "GET", "/api/v1/namespaces/other/pods")
    assert not _can(index, jane, "GET", f"{pods}/web/exec") and not _can(index, jane, "GET", "/api/v1/namespaces/default/secrets")
    # resourceNames: only the named object, never a list or a create
    assert _can(index, sa, "PUT", "/api/v1/namespaces/default/configmaps/app")
    assert not _can(index, sa, "PUT", "/api/v1/namespaces/default/configmaps/other") and not _can(index, sa, "GET", "/api/v1/namespaces/default/configmaps")
    # a ClusterRole bound cluster-wide: view everywhere, no secrets, no writes
    assert _can(index, ops, "GET", "/api/v1/namespaces/x/pods") and _can(index, ops, "GET", "/apis/devices.kubeedge.io/v1beta1/namespaces/x/devices")
    assert not _can(index, ops, "GET", "/api/v1/namespaces/x/secrets/s") and not _can(index, ops, "DELETE", "/api/v1/namespaces/x/pods/p")
    # defaults: discovery and self reviews for every authenticated user, health for everyone, nothing else for anonymous
    assert _can(index, jane, "GET", "/apis") and _can(index, jane, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert _can(index, ANONYMOUS_USER, "GET", "/healthz") and _can(index, ANONYMOUS_USER, "GET", "/version")
    assert not _can(index, ANONYMOUS_USER, "GET", "/api") and not _can(index, jane, "GET", "/metrics")
    # system:masters is a superuser even without any binding
    assert _can(RbacIndex(), UserInfo("root", groups=("system:masters",)), "DELETE", "/api/v1/nodes/n")
    # removing the binding removes the permission (the index is kept incrementally)
    index.apply("rolebindings", _binding("RoleBinding", "jane-reads", "Role", "pod-reader", [], "default"), deleted=True)
    assert not _can(index, jane, "GET", pods) and ("User", "jane") not in index.by_subject


def test_rbac_subresource_and_url_wildcards() -> None:
    ix = RbacIndex()
    ix.apply("clusterroles", _role("ClusterRole", "status", [{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["update"]}, {"nonResourceURLs": ["/logs/*"], "verbs": ["get"]}]))
    ix.apply("clusterrolebindings", _binding("ClusterRoleBinding", "b", "ClusterRole", "status", [{"kind": "User", "name": "u"}]))
    u = UserInfo("u")
    assert _can(ix, u, "PUT", "/api/v1/nodes/n/status") and not _can(ix, u, "PUT", "/api/v1/nodes/n")
    assert _can(ix, u, "GET", "/logs/x/y") and not _can(ix, u, "GET", "/logsx")
    # a binding to a role that does not exist says so in the reason
    ix.apply("rolebindings", _binding("RoleBinding", "dangling", "Role", "nope", [{"kind": "User", "name": "u"}], "d"))
    d = Authorizer(ix).authorize(u, request_attributes("GET", "/api/v1/namespaces/d/pods"))
    assert not d.allowed and 'role.rbac.authorization.k8s.io "nope" not found' in d.reason
    rules, incomplete = ix.rules_for(u, "d")
    assert incomplete and len(rules) == 2


def test_escalation_check() -> None:
    owner = [Rule(("get", "list"), ("",), ("pods",)), Rule(("*",), ("",), ("configmaps",), ("app",))]
    assert uncovered(owner, [Rule(("get",), ("",), ("pods",))]) == []
    assert uncovered(owner, [Rule(("update",), ("",), ("configmaps",), ("app",))]) == []
    missing = uncovered(owner, [Rule(("get", "delete"), ("",), ("pods", "secrets"))])
    assert [m.describe() for m in missing] == [
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}',
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}',
        '{APIGroups:[""], Resources:["secrets"], Verbs:["delete"]}',
    ]
    assert uncovered(owner, [Rule(("get",), ("",), ("configmaps",))]), "a name-limited grant does not cover every name"
    assert uncovered([Rule(("*",), ("*",), ("*",))], [Rule(("*",), ("*",), ("*",))]) == []
    assert uncovered(owner, [Rule(("get",), non_resource_urls=("/metrics",))])


# -- Node authorizer ---------------------------------------------------------------------


def test_node_authorizer() -> None:
    g = NodeGraph()
    pod = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"nodeName": "edge-1", "volumes": [{"name": "c", "configMap": {"name": "cfg"}}], "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]}]}}
    g.apply("pods", pod)
    g.apply("pods", {"metadata": {"name": "other", "namespace": "default"}, "spec": {"nodeName": "edge-2", "volumes": [{"name": "s", "secret": {"secretName": "b-only"}}]}})
    g.apply("devices", {"metadata": {"name": "t", "namespace": "default"}, "spec": {"nodeName": "edge-1", "deviceModelRef": {"name": "m"}}})
    az = Authorizer(RbacIndex(), g)
    a, b = node_user("edge-1"), node_user("edge-2")

    def can(user: UserInfo, method: str, path: str) -> bool:
        return az.authorize(user, request_attributes(method, path)).allowed

    assert can(a, "GET", "/api/v1/namespaces/default/secrets/db") and can(a, "GET", "/api/v1/namespaces/default/configmaps/cfg")
    assert not can(a, "GET", "/api/v1/namespaces/default/secrets/b-only") and can(b, "GET", "/api/v1/namespaces/default/secrets/b-only")
    assert not can(a, "GET", "/api/v1/namespaces/default/secrets"), "no list of secrets"
    assert can(a, "GET", "/api/v1/pods") and can(a, "GET", "/api/v1/nodes/edge-2")
    assert can(a, "PATCH", "/api/v1/nodes/edge-1/status") and not can(a, "PATCH", "/api/v1/nodes/edge-2/status")
    assert can(a, "PUT", "/api/v1/namespaces/default/pods/web/status") and not can(b, "PUT", "/api/v1/namespaces/default/pods/web/status")
    assert not can(a, "PUT", "/api/v1/namespaces/default/pods/web") and not can(a, "DELETE", "/api/v1/namespaces/default/pods/web")
    assert can(a, "PATCH", "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/t/status") and not can(b, "PATCH", "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devices/t/status")
    assert can(a, "GET", "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devicemodels/m") and not can(b, "GET", "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devicemodels/m")
    assert can(a, "POST", "/api/v1/namespaces/default/events") and not can(a, "POST", "/api/v1/namespaces/default/configmaps")
    d = az.authorize(a, request_attributes("GET", "/api/v1/namespaces/default/secrets/b-only"))
    assert forbidden(a.name, request_attributes("GET", "/api/v1/namespaces/default/secrets/b-only"), d.reason).message == (
        'secrets "b-only" is forbidden: User "system:node:edge-1" cannot get resource "secrets" in API group "" in the namespace "default": '
        "no relationship found between node 'edge-1' and this object"
    )
    # the pod moves away: the relationship goes with it
    g.apply("pods", pod, deleted=True)
    assert not can(a, "GET", "/api/v1/namespaces/default/secrets/db") and not can(a, "PUT", "/api/v1/namespaces/default/pods/web/status")


# -- Pod Security Admission ---------------------------------------------------------------


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def test_pod_security_levels() -> None:
    plain = _pod()
    assert podsecurity.violations(plain, "baseline") == []
    hostpath = _pod(volumes=[{"name": "host", "hostPath": {"path": "/"}}])
    priv = _pod(containers=[{"name": "c", "image": "i", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN", "CHOWN"]}}}])
    assert podsecurity.violations(hostpath, "privileged") == []
    with pytest.raises(Forbidden) as ei:
        podsecurity.check(hostpath, "baseline")
    assert ei.value.message == 'pods "web" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "host")'
    assert podsecurity.violations(priv, "baseline") == [
        'privileged (container "c" must not set securityContext.privileged=true)',
        'non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)',
    ]
    assert podsecurity.violations(_pod(hostNetwork=True, hostPID=True), "baseline") == ["host namespaces (hostNetwork=true, hostPID=true)"]
    r = podsecurity.violations(plain, "restricted")
    assert r == [
        'allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)',
        'unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])',
        'runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)',
        'seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")',
    ]
    ok = _pod(
        securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        containers=[{"name": "c", "image": "i", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        volumes=[{"name": "cfg", "configMap": {"name": "x"}}],
    )
    assert podsecurity.violations(ok, "restricted") == []
    assert podsecurity.namespace_level({"metadata": {"labels": {podsecurity.ENFORCE_LABEL: "privileged"}}}, "baseline") == "privileged"
    assert podsecurity.namespace_level({"metadata": {"labels": {podsecurity.ENFORCE_LABEL: "bogus"}}}, "baseline") == "baseline"
