"""Kubernetes RBAC: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings evaluated in
memory (no aggregation).

:class:`RbacIndex` is kept up to date one object at a time (``apply``) from a watch of the
four kinds, and indexes the bindings by subject and namespace, so a check looks only at the
bindings of the request's user and groups - never at every binding. A rule matches as in
Kubernetes' ``rbac/v1`` helpers: verbs (``*``), API groups (``*``), resources with
subresources (``pods/log``, ``*``, ``*/status``), ``resourceNames`` (only requests that name
an object) and ``nonResourceURLs`` (exact, or a prefix ending in ``*``).

:func:`uncovered` is the escalation check: the rules of a Role a user creates, or of the role a
binding grants, must be covered by what the user already holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edgebus.auth.attributes import Attributes
from edgebus.auth.user import UserInfo, service_account_user

GROUP = "rbac.authorization.k8s.io"
ROLES, CLUSTERROLES = "roles", "clusterroles"
ROLEBINDINGS, CLUSTERROLEBINDINGS = "rolebindings", "clusterrolebindings"
PLURALS = (ROLES, CLUSTERROLES, ROLEBINDINGS, CLUSTERROLEBINDINGS)


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(x for x in v if isinstance(x, str)) if isinstance(v, list) else ()


@dataclass(frozen=True, slots=True)
class Rule:
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    @classmethod
    def parse(cls, r: Any) -> Rule | None:
        if not isinstance(r, dict):
            return None
        return cls(_strs(r.get("verbs")), _strs(r.get("apiGroups")), _strs(r.get("resources")), _strs(r.get("resourceNames")), _strs(r.get("nonResourceURLs")))

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verbs": list(self.verbs)}
        if self.non_resource_urls:
            out["nonResourceURLs"] = list(self.non_resource_urls)
        else:
            out["apiGroups"] = list(self.api_groups)
            out["resources"] = list(self.resources)
            if self.resource_names:
                out["resourceNames"] = list(self.resource_names)
        return out

    def describe(self) -> str:
        """As Kubernetes prints a rule in an escalation error: ``{APIGroups:[""], Resources:["pods"], Verbs:["get"]}``."""
        q = lambda xs: " ".join(f'"{x}"' for x in xs)  # noqa: E731
        if self.non_resource_urls:
            return f"{{NonResourceURLs:[{q(self.non_resource_urls)}], Verbs:[{q(self.verbs)}]}}"
        names = f", ResourceNames:[{q(self.resource_names)}]" if self.resource_names else ""
        return f"{{APIGroups:[{q(self.api_groups)}], Resources:[{q(self.resources)}]{names}, Verbs:[{q(self.verbs)}]}}"


def rules_of(role: dict[str, Any]) -> list[Rule]:
    return [r for r in (Rule.parse(x) for x in role.get("rules") or []) if r is not None]


# -- matching --------------------------------------------------------------------------


def _verb_matches(rule: Rule, verb: str) -> bool:
    return "*" in rule.verbs or verb in rule.verbs


def _group_matches(rule: Rule, group: str) -> bool:
    return "*" in rule.api_groups or group in rule.api_groups


def _resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    for r in rule.resources:
        if r == "*" or r == combined:
            return True
        if subresource and r == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: Rule, name: str) -> bool:
    return not rule.resource_names or name in rule.resource_names


def _url_matches(rule: Rule, path: str) -> bool:
    for u in rule.non_resource_urls:
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u.rstrip("*"))):
            return True
    return False


def rule_allows(rule: Rule, a: Attributes) -> bool:
    if not _verb_matches(rule, a.verb):
        return False
    if not a.resource_request:
        return _url_matches(rule, a.path)
    return _group_matches(rule, a.api_group) and _resource_matches(rule, a.combined_resource, a.subresource) and _name_matches(rule, a.name)


# -- the index -------------------------------------------------------------------------

SubjectKey = tuple[str, str]  # ("User" | "Group", name)
BindingKey = tuple[str, str, str]  # (plural, namespace or "", name)


@dataclass(frozen=True, slots=True)
class Binding:
    key: BindingKey
    namespace: str  # "" for a ClusterRoleBinding
    role_kind: str  # "Role" | "ClusterRole"
    role_name: str
    subjects: frozenset[SubjectKey]


def subject_keys(subjects: Any, binding_namespace: str) -> frozenset[SubjectKey]:
    out: set[SubjectKey] = set()
    for s in subjects or []:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            continue
        kind = s.get("kind")
        if kind == "User":
            out.add(("User", s["name"]))
        elif kind == "Group":
            out.add(("Group", s["name"]))
        elif kind == "ServiceAccount":
            ns = s.get("namespace") or binding_namespace
            if ns:
                out.add(("User", service_account_user(str(ns), s["name"])))
    return frozenset(out)


def user_keys(user: UserInfo) -> list[SubjectKey]:
    return [("User", user.name), *(("Group", g) for g in user.groups)]


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""
    #: the authorizer had an opinion (an allow, or an explicit deny); else the next one decides
    decided: bool = True


NO_OPINION = Decision(False, decided=False)


@dataclass
class RbacIndex:
    roles: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    cluster_roles: dict[str, list[Rule]] = field(default_factory=dict)
    bindings: dict[BindingKey, Binding] = field(default_factory=dict)
    #: subject -> namespace ("" = cluster-wide) -> bindings naming it
    by_subject: dict[SubjectKey, dict[str, set[BindingKey]]] = field(default_factory=dict)

    def apply(self, plural: str, obj: dict[str, Any], *, deleted: bool = False) -> None:
        md = obj.get("metadata") or {}
        ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
        if plural == ROLES:
            if deleted:
                self.roles.pop((ns, name), None)
            else:
                self.roles[(ns, name)] = rules_of(obj)
        elif plural == CLUSTERROLES:
            if deleted:
                self.cluster_roles.pop(name, None)
            else:
                self.cluster_roles[name] = rules_of(obj)
        elif plural in (ROLEBINDINGS, CLUSTERROLEBINDINGS):
            bns = ns if plural == ROLEBINDINGS else ""
            key: BindingKey = (plural, bns, name)
            self._unindex(key)
            if not deleted:
                ref = obj.get("roleRef") or {}
                kind = ref.get("kind") if plural == ROLEBINDINGS else "ClusterRole"
                b = Binding(key, bns, str(kind or ""), str(ref.get("name") or ""), subject_keys(obj.get("subjects"), bns))
                self.bindings[key] = b
                for s in b.subjects:
                    self.by_subject.setdefault(s, {}).setdefault(bns, set()).add(key)

    def _unindex(self, key: BindingKey) -> None:
        old = self.bindings.pop(key, None)
        if old is None:
            return
        for s in old.subjects:
            per_ns = self.by_subject.get(s, {})
            per_ns.get(old.namespace, set()).discard(key)
            if not per_ns.get(old.namespace):
                per_ns.pop(old.namespace, None)
            if not per_ns:
                self.by_subject.pop(s, None)

    def clear(self) -> None:
        self.roles.clear()
        self.cluster_roles.clear()
        self.bindings.clear()
        self.by_subject.clear()

    # -- evaluation -------------------------------------------------------------------
    def user_bindings(self, user: UserInfo, namespace: str) -> Iterator[Binding]:
        """The cluster-wide bindings naming the user or a group, then those of ``namespace``."""
        seen: set[BindingKey] = set()
        for scope in ("", namespace) if namespace else ("",):
            for sk in user_keys(user):
                for bk in sorted(self.by_subject.get(sk, {}).get(scope, ())):
                    if bk not in seen:
                        seen.add(bk)
                        yield self.bindings[bk]

    def _rules(self, b: Binding) -> tuple[list[Rule], str]:
        if b.role_kind == "ClusterRole":
            rules = self.cluster_roles.get(b.role_name)
            return (rules, "") if rules is not None else ([], f'clusterrole.rbac.authorization.k8s.io "{b.role_name}" not found')
        if b.role_kind == "Role" and b.namespace:
            rules = self.roles.get((b.namespace, b.role_name))
            return (rules, "") if rules is not None else ([], f'role.rbac.authorization.k8s.io "{b.role_name}" not found')
        return [], f"unknown roleRef kind {b.role_kind!r}"

    def authorize(self, user: UserInfo, a: Attributes) -> Decision:
        errors: list[str] = []
        for b in self.user_bindings(user, a.namespace if a.resource_request else ""):
            rules, err = self._rules(b)
            if err:
                errors.append(err)
            if any(rule_allows(r, a) for r in rules):
                return Decision(True, f'RBAC: allowed by {"ClusterRoleBinding" if not b.namespace else "RoleBinding"} "{b.key[2]}"')
        reason = f"RBAC: [{', '.join(errors)}]" if errors else ""
        return Decision(False, reason, decided=False)

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Rule], bool]:
        """Every rule that applies to the user in ``namespace`` (SelfSubjectRulesReview);
        and whether the list is incomplete (a binding names a role that does not exist)."""
        out: list[Rule] = []
        incomplete = False
        for b in self.user_bindings(user, namespace):
            rules, err = self._rules(b)
            incomplete |= bool(err)
            out.extend(rules)
        return out, incomplete


# -- escalation ------------------------------------------------------------------------


def _covers_one(owner: Rule, verb: str, group: str, resource: str, name: str, url: str) -> bool:
    if not ("*" in owner.verbs or verb in owner.verbs):
        return False
    if url:
        return bool(owner.non_resource_urls) and any(u == "*" or u == url or (u.endswith("*") and url.startswith(u.rstrip("*"))) for u in owner.non_resource_urls)
    if owner.non_resource_urls and not owner.resources:
        return False
    if not ("*" in owner.api_groups or group in owner.api_groups):
        return False
    sub = resource.split("/", 1)[1] if "/" in resource else ""
    if not ("*" in owner.resources or resource in owner.resources or (sub and f"*/{sub}" in owner.resources)):
        return False
    return not owner.resource_names or (bool(name) and name in owner.resource_names)


def uncovered(owner: Iterable[Rule], wanted: Iterable[Rule]) -> list[Rule]:
    """The parts of ``wanted`` that ``owner`` does not grant (Kubernetes' ``Covers``): each
    wanted rule is broken into single verb / group / resource / name atoms."""
    owner = list(owner)
    missing: list[Rule] = []
    for w in wanted:
        if w.non_resource_urls:
            for verb in w.verbs:
                for url in w.non_resource_urls:
                    if not any(_covers_one(o, verb, "", "", "", url) for o in owner):
                        missing.append(Rule((verb,), non_resource_urls=(url,)))
            continue
        for verb in w.verbs:
            for group in w.api_groups:
                for resource in w.resources:
                    for name in w.resource_names or ("",):
                        if not any(_covers_one(o, verb, group, resource, name, "") for o in owner):
                            missing.append(Rule((verb,), (group,), (resource,), (name,) if name else ()))
    return missing
