"""What a DaemonSet needs on each node (pure; no I/O).

* :func:`should_run`: the template's ``nodeSelector``, its required node affinity and the
  node's ``NoSchedule`` / ``NoExecute`` taints against the template's tolerations plus the
  ones every DaemonSet pod gets (:data:`DAEMON_TOLERATIONS`: not-ready, unreachable,
  pressure and unschedulable nodes still run their daemons);
* :func:`node_actions`: per node, the pod to create, or the pods to delete (extra, failed,
  on a node that should not run one);
* :func:`rolling_update`: the old pods to replace now (``maxUnavailable``) or the nodes to
  surge a new pod onto first (``maxSurge``);
* :func:`status`.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from edgebus.objects.workloads import int_or_percent
from edgebus.workloads import pods as P
from edgebus.workloads.revisions import CONTROLLER_REVISION_HASH

POD_TEMPLATE_GENERATION = "pod-template-generation"

DAEMON_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


# -- node predicates -----------------------------------------------------------------


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    op = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if not key:
        return op == "Exists"
    if key != taint.get("key"):
        return False
    return op == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def daemon_tolerations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The template's tolerations plus every DaemonSet pod's (as Kubernetes adds them)."""
    out = [dict(t) for t in spec.get("tolerations") or [] if isinstance(t, dict)]
    extra = list(DAEMON_TOLERATIONS) + ([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])
    for t in extra:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] and (x.get("operator") or "Equal") == "Exists" for x in out):
            out.append(dict(t))
    return out


def _expr_matches(e: dict[str, Any], value: str | None) -> bool:
    op, values = e.get("operator"), [str(v) for v in e.get("values") or []]
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_selector_terms_match(terms: list[dict[str, Any]], node: dict[str, Any]) -> bool:
    """A ``NodeSelector``: any term, all of its expressions (labels) and fields (name)."""
    labels = P.md(node).get("labels") or {}
    for term in terms:
        if not isinstance(term, dict):
            continue
        exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not exprs and not fields:
            continue
        ok = all(_expr_matches(e, labels.get(e.get("key"))) for e in exprs)
        ok = ok and all(_expr_matches(f, P.md(node).get("name") if f.get("key") == "metadata.name" else None) for f in fields)
        if ok:
            return True
    return False


def should_run(template_spec: dict[str, Any], node: dict[str, Any]) -> bool:
    if P.md(node).get("deletionTimestamp"):
        return False
    labels = P.md(node).get("labels") or {}
    for k, v in (template_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    req = (((template_spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")) or None
    if req is not None and not node_selector_terms_match(req.get("nodeSelectorTerms") or [], node):
        return False
    tolerations = daemon_tolerations(template_spec)
    for taint in (node.get("spec") or {}).get("taints") or []:
        if not isinstance(taint, dict) or taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return False
    return True


# -- pods ------------------------------------------------------------------------------


def pod_spec_for_node(template_spec: dict[str, Any], node: str, *, bind: bool) -> dict[str, Any]:
    """The pod spec for ``node``: required node affinity on ``metadata.name`` (replacing the
    template's required terms, which the node was checked against, as Kubernetes does), the
    daemon tolerations, and ``nodeName`` when the controller binds its pods itself."""
    spec = copy.deepcopy(template_spec)
    aff = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    aff["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [term]}
    spec["tolerations"] = daemon_tolerations(template_spec)
    if bind:
        spec["nodeName"] = node
    return spec


def revision_hash(pod: dict[str, Any]) -> str:
    return str((P.md(pod).get("labels") or {}).get(CONTROLLER_REVISION_HASH) or "")


@dataclass
class NodePlan:
    create: list[str] = field(default_factory=list)  # nodes that need a pod
    delete: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # failed daemon pods (deleted, then replaced)


def node_actions(should: dict[str, bool], by_node: dict[str, list[dict[str, Any]]], hash_: str, *, surging: bool) -> NodePlan:
    """``should``: node -> whether it should run the daemon; ``by_node``: the DaemonSet's
    pods per node."""
    out = NodePlan()
    for node in sorted(set(should) | set(by_node)):
        pods = by_node.get(node, [])
        run = should.get(node, False)
        if not run:
            out.delete += [p for p in pods if not P.is_terminating(p)]
            continue
        failed = [p for p in pods if P.phase(p) == "Failed" and not P.is_terminating(p)]
        out.failed += failed
        active = [p for p in pods if P.is_active(p)]
        if not active:
            if not failed:  # a terminating pod does not hold its replacement back (as Kubernetes)
                out.create.append(node)
            continue
        if len(active) > 1:
            keep = _keep(active, hash_, surging)
            out.delete += [p for p in active if p not in keep]
    return out


def _keep(active: list[dict[str, Any]], hash_: str, surging: bool) -> list[dict[str, Any]]:
    oldest = sorted(active, key=lambda p: (str(P.md(p).get("creationTimestamp") or ""), P.md(p).get("name", "")))
    if surging:
        new = [p for p in oldest if revision_hash(p) == hash_]
        old = [p for p in oldest if revision_hash(p) != hash_]
        if new and old:
            return [new[0], old[0]]  # a surge in progress: the old one goes once the new one is available
    return oldest[:1]


@dataclass
class Rollout:
    delete: list[dict[str, Any]] = field(default_factory=list)
    surge: list[str] = field(default_factory=list)  # nodes to create a new pod on next to the old one


def rolling_update(ds: dict[str, Any], by_node: dict[str, list[dict[str, Any]]], should: dict[str, bool], hash_: str, now: dt.datetime) -> Rollout:
    spec = ds.get("spec") or {}
    st = spec.get("updateStrategy") or {}
    out = Rollout()
    if (st.get("type") or "RollingUpdate") != "RollingUpdate":
        return out
    desired = sum(1 for v in should.values() if v)
    ru = st.get("rollingUpdate") or {}
    max_surge = int_or_percent(ru.get("maxSurge", 0), desired, round_up=True)
    max_unavailable = int_or_percent(ru.get("maxUnavailable", 1), desired, round_up=True)
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    mrs = int(spec.get("minReadySeconds") or 0)
    unavailable = 0
    replace_now: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    surge_in_progress = 0
    for node in sorted(by_node):
        if not should.get(node):
            continue
        active = [p for p in by_node[node] if P.is_active(p)]
        new = [p for p in active if revision_hash(p) == hash_]
        old = [p for p in active if revision_hash(p) != hash_]
        if max_surge > 0:
            if old and new:
                if P.is_available(new[0], mrs, now):
                    replace_now += old
                else:
                    surge_in_progress += 1
            elif old:
                if not P.is_available(old[0], mrs, now):
                    replace_now += old
                else:
                    candidates.append(old[0])
            continue
        if len(active) != 1:
            unavailable += 1
        elif new:
            if not P.is_available(new[0], mrs, now):
                unavailable += 1
        elif not P.is_available(old[0], mrs, now):
            replace_now.append(old[0])
        else:
            candidates.append(old[0])
    if max_surge > 0:
        budget = max(max_surge - surge_in_progress, 0)
        out.delete = replace_now
        out.surge = [P.node_of(p) or "" for p in candidates[:budget]]
        return out
    budget = min(max(max_unavailable - unavailable, 0), len(candidates))
    out.delete = replace_now + candidates[:budget]
    return out


def status(ds: dict[str, Any], should: dict[str, bool], by_node: dict[str, list[dict[str, Any]]], hash_: str, now: dt.datetime) -> dict[str, Any]:
    mrs = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    desired = current = misscheduled = ready = available = updated = 0
    for node in set(should) | set(by_node):
        active = [p for p in by_node.get(node, []) if P.is_active(p)]
        if should.get(node):
            desired += 1
            if active:
                current += 1
                newest = max(active, key=lambda p: str(P.md(p).get("creationTimestamp") or ""))
                if any(P.is_ready(p) for p in active):
                    ready += 1
                if any(P.is_available(p, mrs, now) for p in active):
                    available += 1
                if revision_hash(newest) == hash_:
                    updated += 1
        elif active:
            misscheduled += 1
    out = {
        "currentNumberScheduled": current,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "observedGeneration": int(P.md(ds).get("generation") or 1),
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
    }
    if desired - available > 0:
        out["numberUnavailable"] = desired - available
    prev = ds.get("status") or {}
    if prev.get("collisionCount"):
        out["collisionCount"] = prev["collisionCount"]
    return out
