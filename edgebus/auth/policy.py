"""The default ClusterRoles and ClusterRoleBindings (Kubernetes' bootstrap policy, written
out without aggregation), created at apiserver start when missing.

| ClusterRole | bound to (ClusterRoleBinding of the same name) | grants |
|---|---|---|
| ``cluster-admin`` | group ``system:masters`` | everything |
| ``admin`` | - (bind it in a namespace) | ``edit`` plus Roles, RoleBindings, LocalSubjectAccessReviews |
| ``edit`` | - | read and write of workloads, ConfigMaps, Secrets, Services, devices, ``pods/exec``, ``serviceaccounts/token`` |
| ``view`` | - | read of everything but Secrets |
| ``system:basic-user`` | group ``system:authenticated`` | SelfSubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview |
| ``system:discovery`` | group ``system:authenticated`` | ``/api``, ``/apis``, ``/openapi``, ``/version``, health paths |
| ``system:public-info-viewer`` | groups ``system:authenticated``, ``system:unauthenticated`` | ``/healthz``, ``/livez``, ``/readyz``, ``/version`` |
| ``system:monitoring`` | group ``system:monitoring`` | ``/metrics`` and the health paths |
| ``system:node`` | - (the Node authorizer decides for nodes) | what a node may do, for reference |
"""

from __future__ import annotations

from typing import Any

from edgebus.auth.user import AUTHENTICATED, MASTERS, UNAUTHENTICATED

RBAC_API = "rbac.authorization.k8s.io/v1"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
ALL_VERBS = [*WRITE[:3], "get", "list", "patch", "update", "watch"]
DEVICES = "devices.kubeedge.io"

_VIEW_CORE = [
    "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods", "replicationcontrollers",
    "replicationcontrollers/scale", "serviceaccounts", "services", "services/status", "bindings", "events", "limitranges",
    "namespaces/status", "pods/log", "pods/status", "replicationcontrollers/status", "resourcequotas", "resourcequotas/status",
]  # fmt: skip
_APPS = [
    "controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
    "replicasets", "replicasets/scale", "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status",
]  # fmt: skip
_GROUPS_VIEW: list[tuple[str, list[str]]] = [
    ("apps", _APPS),
    ("autoscaling", ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    ("batch", ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    ("policy", ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    ("discovery.k8s.io", ["endpointslices"]),
    (DEVICES, ["devices", "devices/status", "devicemodels"]),
]
_EDIT_CORE = ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services"]
_POD_STREAMS = ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]
_HEALTH = ["/healthz", "/livez", "/readyz", "/version", "/version/"]


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _url_rule(urls: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"nonResourceURLs": urls, "verbs": verbs}


def _view_rules() -> list[dict[str, Any]]:
    rules = [_rule([""], _VIEW_CORE, READ), _rule([""], ["namespaces"], READ)]
    rules += [_rule([g], rs, READ) for g, rs in _GROUPS_VIEW]
    return rules


def _edit_rules() -> list[dict[str, Any]]:
    rules = _view_rules()
    rules += [
        _rule([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
        _rule([""], ["serviceaccounts"], ["impersonate"]),
        _rule([""], _POD_STREAMS, WRITE),
        _rule([""], ["pods/eviction"], ["create"]),
        _rule([""], _EDIT_CORE, WRITE),
        _rule([""], ["serviceaccounts/token"], ["create"]),
    ]
    rules += [_rule([g], [r for r in rs if not r.endswith("/status")], WRITE) for g, rs in _GROUPS_VIEW if g != "discovery.k8s.io"]
    return rules


def _admin_rules() -> list[dict[str, Any]]:
    return [
        *_edit_rules(),
        _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        _rule(["rbac.authorization.k8s.io"], ["rolebindings", "roles"], ALL_VERBS),
    ]


def _node_rules() -> list[dict[str, Any]]:
    return [
        _rule([""], ["nodes", "pods", "services", "endpoints", "namespaces"], READ),
        _rule([""], ["configmaps", "secrets"], ["get"]),
        _rule([""], ["nodes", "nodes/status", "pods/status"], ["patch", "update"]),
        _rule([""], ["events"], ["create", "patch", "update"]),
        _rule([DEVICES], ["devices", "devicemodels"], ["get"]),
        _rule([DEVICES], ["devices/status"], ["patch", "update"]),
    ]


CLUSTER_ROLES: dict[str, list[dict[str, Any]]] = {
    "cluster-admin": [_rule(["*"], ["*"], ["*"]), _url_rule(["*"], ["*"])],
    "admin": _admin_rules(),
    "edit": _edit_rules(),
    "view": _view_rules(),
    "system:basic-user": [
        _rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
        _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"]),
    ],
    "system:discovery": [_url_rule(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], ["get"])],
    "system:public-info-viewer": [_url_rule(_HEALTH, ["get"])],
    "system:monitoring": [_url_rule(["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/readyz", "/readyz/*"], ["get"])],
    "system:node": _node_rules(),
}

#: ClusterRoleBinding name (= the ClusterRole) -> groups bound
CLUSTER_ROLE_BINDINGS: dict[str, list[str]] = {
    "cluster-admin": [MASTERS],
    "system:basic-user": [AUTHENTICATED],
    "system:discovery": [AUTHENTICATED],
    "system:public-info-viewer": [AUTHENTICATED, UNAUTHENTICATED],
    "system:monitoring": ["system:monitoring"],
}

_META = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}


def cluster_roles() -> list[dict[str, Any]]:
    return [{"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": {"name": n, **_META}, "rules": rules} for n, rules in CLUSTER_ROLES.items()]


def cluster_role_bindings() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": RBAC_API,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": n, **_META},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": n},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in groups],
        }
        for n, groups in CLUSTER_ROLE_BINDINGS.items()
    ]
