"""Validation of the RBAC kinds (Role, ClusterRole, RoleBinding, ClusterRoleBinding) and
of ServiceAccounts, with Kubernetes' messages."""

from __future__ import annotations

from typing import Any

from edgebus import names
from edgebus.objects.checks import Causes, checks

SUBJECT_KINDS = ("User", "Group", "ServiceAccount")
ROLE_KINDS = ("Role", "ClusterRole")


def check_rbac_name(c: Causes, field: str, value: Any) -> None:
    """RBAC names may contain ``:`` (``system:node``) besides a DNS subdomain's characters."""
    if not isinstance(value, str) or not value:
        c.required(field)
    elif not names.is_object_name(value):
        c.invalid(field, value, "must consist of lower case alphanumeric characters, '-', '.' or ':', and must start and end with an alphanumeric character")


def _str_list(c: Causes, field: str, v: Any) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        c.type_error(field, "a list of strings", v)
        return []
    return v


def _check_rules(c: Causes, obj: dict[str, Any], *, namespaced: bool) -> None:
    rules = obj.get("rules")
    if rules is None:
        return
    if not isinstance(rules, list):
        c.type_error("rules", "a list", rules)
        return
    for i, r in enumerate(rules):
        f = f"rules[{i}]"
        if not isinstance(r, dict):
            c.type_error(f, "an object", r)
            continue
        verbs = _str_list(c, f"{f}.verbs", r.get("verbs"))
        if not verbs:
            c.required(f"{f}.verbs")
        urls = _str_list(c, f"{f}.nonResourceURLs", r.get("nonResourceURLs"))
        groups = _str_list(c, f"{f}.apiGroups", r.get("apiGroups"))
        resources = _str_list(c, f"{f}.resources", r.get("resources"))
        _str_list(c, f"{f}.resourceNames", r.get("resourceNames"))
        if urls:
            if namespaced:
                c.invalid(f"{f}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs")
            if resources or groups:
                c.invalid(f"{f}.nonResourceURLs", urls, "rules cannot apply to both regular resources and non-resource URLs")
        elif not resources:
            c.required(f"{f}.resources")
        elif not groups:
            c.required(f"{f}.apiGroups")


@checks("roles", name=check_rbac_name)
def check_role(c: Causes, obj: dict[str, Any]) -> None:
    _check_rules(c, obj, namespaced=True)


@checks("clusterroles", name=check_rbac_name)
def check_cluster_role(c: Causes, obj: dict[str, Any]) -> None:
    _check_rules(c, obj, namespaced=False)


def _check_binding(c: Causes, obj: dict[str, Any], *, cluster: bool) -> None:
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        c.required("roleRef")
    else:
        kinds = ("ClusterRole",) if cluster else ROLE_KINDS
        if ref.get("kind") not in kinds:
            c.unsupported("roleRef.kind", ref.get("kind"), kinds)
        if ref.get("apiGroup") not in (None, "", "rbac.authorization.k8s.io"):
            c.unsupported("roleRef.apiGroup", ref.get("apiGroup"), ("rbac.authorization.k8s.io",))
        check_rbac_name(c, "roleRef.name", ref.get("name"))
    subjects = obj.get("subjects")
    if subjects is None:
        return
    if not isinstance(subjects, list):
        c.type_error("subjects", "a list", subjects)
        return
    for i, s in enumerate(subjects):
        f = f"subjects[{i}]"
        if not isinstance(s, dict):
            c.type_error(f, "an object", s)
            continue
        if s.get("kind") not in SUBJECT_KINDS:
            c.unsupported(f"{f}.kind", s.get("kind"), SUBJECT_KINDS)
        if not isinstance(s.get("name"), str) or not s.get("name"):
            c.required(f"{f}.name")
        if s.get("kind") == "ServiceAccount":
            if s.get("apiGroup") not in (None, ""):
                c.unsupported(f"{f}.apiGroup", s.get("apiGroup"), ("",))
            if cluster and not s.get("namespace"):
                c.required(f"{f}.namespace")
        elif s.get("kind") in ("User", "Group") and s.get("apiGroup") not in (None, "rbac.authorization.k8s.io"):
            c.unsupported(f"{f}.apiGroup", s.get("apiGroup"), ("rbac.authorization.k8s.io",))


@checks("rolebindings", name=check_rbac_name)
def check_role_binding(c: Causes, obj: dict[str, Any]) -> None:
    _check_binding(c, obj, cluster=False)


@checks("clusterrolebindings", name=check_rbac_name)
def check_cluster_role_binding(c: Causes, obj: dict[str, Any]) -> None:
    _check_binding(c, obj, cluster=True)


@checks("serviceaccounts")
def check_service_account(c: Causes, obj: dict[str, Any]) -> None:
    for key in ("secrets", "imagePullSecrets"):
        v = obj.get(key)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, dict) for x in v)):
            c.type_error(key, "a list of object references", v)
    a = obj.get("automountServiceAccountToken")
    if a is not None and not isinstance(a, bool):
        c.type_error("automountServiceAccountToken", "a boolean", a)
