"""Label and field selectors with Kubernetes syntax.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``,
``!a``, comma-separated (all must hold). Field selectors: ``path=value``, ``path==value``,
``path!=value`` on dotted paths such as ``spec.nodeName`` or ``metadata.name``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgebus.errors import BadRequest

Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        if self.op == "=":
            return has and v == self.values[0]
        if self.op == "!=":
            return not has or v != self.values[0]
        if self.op == "in":
            return has and v in self.values
        if self.op == "notin":
            return not has or v not in self.values
        if self.op == "exists":
            return has
        return not has


_SET = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([^\s!=]+)\s*(==|=|!=)\s*([^\s,]*)\s*$")
_KEY = re.compile(r"^\s*(!?)\s*([A-Za-z0-9][-A-Za-z0-9_./]*)\s*$")


def _split_top(expr: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in parts if p.strip()]


def parse_label_selector(expr: str | None) -> list[Requirement]:
    if not expr or not expr.strip():
        return []
    reqs = []
    for part in _split_top(expr):
        if m := _SET.match(part):
            vals = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(2), vals))
        elif m := _EQ.match(part):
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append(Requirement(m.group(1), op, (m.group(3),)))
        elif m := _KEY.match(part):
            reqs.append(Requirement(m.group(2), "!exists" if m.group(1) else "exists"))
        else:
            raise BadRequest(f"unable to parse requirement: {part.strip()!r}")
    return reqs


def label_predicate(expr: str | None) -> Predicate:
    reqs = parse_label_selector(expr)
    if not reqs:
        return lambda _obj: True

    def pred(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in reqs)

    return pred


def field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(expr: str | None) -> list[tuple[str, str, str]]:
    if not expr or not expr.strip():
        return []
    out = []
    for part in expr.split(","):
        m = re.match(r"^\s*([A-Za-z][A-Za-z0-9_.]*)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise BadRequest(f"invalid field selector: {part.strip()!r}")
        out.append((m.group(1), "!=" if m.group(2) == "!=" else "=", m.group(3)))
    return out


#: the fields each resource can be selected by, as Kubernetes' field label conversions allow
#: (every resource: ``metadata.name`` and ``metadata.namespace``)
FIELD_LABELS: dict[str, frozenset[str]] = {
    "pods": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        }
    ),
    "nodes": frozenset({"spec.unschedulable"}),
    "events": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "source.component",  # what ``source`` selects (the events.k8s.io view converts it so)
            "type",
        }
    ),
    "secrets": frozenset({"type"}),
    "namespaces": frozenset({"status.phase"}),
    "services": frozenset({"spec.clusterIP", "spec.type"}),
    "replicationcontrollers": frozenset({"status.replicas"}),
    "replicasets": frozenset({"status.replicas"}),
    "jobs": frozenset({"status.successful"}),
    # edgebus: a Device is bound to a node as a pod is
    "devices": frozenset({"spec.nodeName"}),
}
_COMMON_FIELD_LABELS = frozenset({"metadata.name", "metadata.namespace"})


def check_field_labels(expr: str | None, resource: str) -> None:
    """Refuse a field selector naming a field ``resource`` cannot be selected by (400), as
    Kubernetes does, rather than answer with nothing."""
    allowed = FIELD_LABELS.get(resource, frozenset())
    for path, _op, _value in parse_field_selector(expr):
        if path not in _COMMON_FIELD_LABELS and path not in allowed:
            raise BadRequest(f"field label not supported: {path}")


def field_predicate(expr: str | None, resource: str | None = None) -> Predicate:
    """A predicate for ``expr``; with ``resource`` (a plural), fields it cannot be
    selected by are refused first (:func:`check_field_labels`)."""
    if resource is not None:
        check_field_labels(expr, resource)
    reqs = parse_field_selector(expr)
    if not reqs:
        return lambda _obj: True

    def pred(obj: dict[str, Any]) -> bool:
        for path, op, value in reqs:
            v = field_value(obj, path)
            if (op == "=" and v != value) or (op == "!=" and v == value):
                return False
        return True

    return pred


def field_equals(expr: str | None, path: str) -> str | None:
    """The value ``expr`` requires ``path`` to equal, if it does (to narrow a scan)."""
    for p, op, v in parse_field_selector(expr):
        if p == path and op == "=":
            return v
    return None


def selector_matches(selector: Any, labels: dict[str, str] | None) -> bool:
    """Whether a ``metav1.LabelSelector`` (``matchLabels`` and ``matchExpressions`` with
    ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``) selects ``labels``. An empty selector
    selects everything; a missing (None) or malformed one selects nothing."""
    if not isinstance(selector, dict):
        return False
    labels = labels if isinstance(labels, dict) else {}
    ml = selector.get("matchLabels") or {}
    if not isinstance(ml, dict):
        return False
    for k, v in ml.items():
        if labels.get(k) != v:
            return False
    exprs = selector.get("matchExpressions") or []
    if not isinstance(exprs, list):
        return False
    for e in exprs:
        if not isinstance(e, dict) or not isinstance(e.get("key"), str):
            return False
        key, op = e["key"], e.get("operator")
        values = [str(v) for v in e.get("values") or [] if v is not None] if isinstance(e.get("values"), list) else []
        has = key in labels
        if op == "In":
            ok = has and labels[key] in values
        elif op == "NotIn":
            ok = not has or labels[key] not in values
        elif op == "Exists":
            ok = has
        elif op == "DoesNotExist":
            ok = not has
        else:
            return False
        if not ok:
            return False
    return True
