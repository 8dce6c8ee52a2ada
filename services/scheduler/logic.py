"""Scheduling one pod: predicates (filters), then priorities (scores), as kube-scheduler's
default profile does — pure functions over the cache's :class:`NodeInfo` objects.

Filters, with the reason each prints in ``FailedScheduling``:

========================  ==============================================================
NodeUnschedulable         ``node(s) were unschedulable`` (cordoned, not tolerated)
NodeAffinity              ``node(s) didn't match Pod's node affinity/selector``
TaintToleration           ``node(s) had untolerated taint {key: value}`` (NoSchedule, NoExecute)
RuntimeClass              ``node(s) didn't support the pod's runtime class handler`` (the
                          handler of the pod's RuntimeClass is not in the node's
                          ``status.runtimeHandlers``)
NodePorts                 ``node(s) didn't have free ports for the requested pod ports``
NodeResourcesFit          ``Insufficient cpu`` / ``Insufficient memory`` / ``Too many pods``
InterPodAffinity          ``node(s) didn't match pod affinity rules``, ``... anti-affinity
                          rules``, ``node(s) didn't satisfy existing pods anti-affinity rules``
PodTopologySpread         ``node(s) didn't match pod topology spread constraints``
========================  ==============================================================

Scores (0-100 each, weighted as kube-scheduler's defaults): TaintToleration ×3
(PreferNoSchedule), NodeAffinity ×2 (preferred terms), InterPodAffinity ×2 (preferred
terms), PodTopologySpread ×2 (ScheduleAnyway constraints, or the default spreading of a
controller's pods over hosts and zones), NodeResourcesFit ×1 (least allocated),
NodeResourcesBalancedAllocation ×1. The best node wins; ties are broken at random.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edgebus.objects.shapes import as_list
from edgebus.objects.taints import NO_EXECUTE, NO_SCHEDULE, PREFER_NO_SCHEDULE, UNSCHEDULABLE, tolerates
from services.scheduler import affinity as A
from services.scheduler.model import NodeInfo, PodInfo

MAX_SCORE = 100
#: kube-scheduler looks for at least this many feasible nodes before it stops filtering
MIN_FEASIBLE = 100
MIN_FEASIBLE_PERCENT = 5

UNSCHEDULABLE_NODE = "node(s) were unschedulable"
NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
NODE_PORTS = "node(s) didn't have free ports for the requested pod ports"
RUNTIME_CLASS = "node(s) didn't support the pod's runtime class handler"
TOO_MANY_PODS = "Too many pods"
PREEMPTION_NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"
NO_NODES = "no nodes available to schedule pods"

WEIGHTS = {"taint": 3, "node_affinity": 2, "pod_affinity": 2, "spread": 2, "least_allocated": 1, "balanced": 1}


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    #: preemption could not help (kube-scheduler's UnschedulableAndUnresolvable)
    unresolvable: bool


# -- node selection by labels ------------------------------------------------------------


def _requirement(labels: Mapping[str, str], r: dict[str, object]) -> bool:
    key, op = r.get("key"), r.get("operator")
    if not isinstance(key, str):
        return False
    values = [str(v) for v in vals or []] if isinstance(vals := r.get("values"), list) else []
    has = key in labels
    if op == "In":
        return has and labels[key] in values
    if op == "NotIn":
        return not has or labels[key] not in values
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt") and has and len(values) == 1:
        try:
            a, b = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def term_matches(node: NodeInfo, term: dict[str, object]) -> bool:
    """A NodeSelectorTerm: all its expressions and fields hold (an empty term matches none)."""
    exprs = as_list(term.get("matchExpressions"))
    flds = as_list(term.get("matchFields"))
    if not exprs and not flds:
        return False
    if not all(isinstance(r, dict) and _requirement(node.labels, r) for r in exprs):
        return False
    return all(isinstance(r, dict) and r.get("key") == "metadata.name" and _requirement({"metadata.name": node.name}, r) for r in flds)


def node_affinity_ok(pod: PodInfo, node: NodeInfo) -> bool:
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    if pod.required_node_terms is not None:
        return any(term_matches(node, t) for t in pod.required_node_terms)
    return True


# -- filters -------------------------------------------------------------------------------


def filter_node(pod: PodInfo, node: NodeInfo, state: A.CycleState) -> list[Failure]:
    """The verdict of the first filter that rejects ``node`` (empty: the pod fits). The
    order is kube-scheduler's: NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts,
    NodeResourcesFit, PodTopologySpread, InterPodAffinity."""
    if node.unschedulable and not any(tolerates(t, {"key": UNSCHEDULABLE, "effect": NO_SCHEDULE}) for t in pod.tolerations):
        return [Failure(UNSCHEDULABLE_NODE, True)]
    for taint in node.taints:
        if taint.get("effect") in (NO_SCHEDULE, NO_EXECUTE) and not any(tolerates(t, taint) for t in pod.tolerations):
            return [Failure(f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}", True)]
    if not node_affinity_ok(pod, node):
        return [Failure(NODE_AFFINITY, True)]
    if pod.runtime_handler is not None and pod.runtime_handler not in node.runtime_handlers:
        return [Failure(RUNTIME_CLASS, True)]
    if pod.host_ports and _port_conflict(pod, node):
        return [Failure(NODE_PORTS, False)]
    return fit(pod, node) or A.filter_spread(pod, node, state) or A.filter_affinity(pod, node, state)


def _port_conflict(pod: PodInfo, node: NodeInfo) -> bool:
    for proto, ip, port in pod.host_ports:
        for uproto, uip, uport in node.ports:
            if uproto == proto and uport == port and (ip == uip or "0.0.0.0" in (ip, uip)):
                return True
    return False


def fit(pod: PodInfo, node: NodeInfo) -> list[Failure]:
    out = []
    if len(node.pods) + 1 > node.allocatable.get("pods", 0):
        out.append(Failure(TOO_MANY_PODS, False))
    for r, want in sorted(pod.requests.items()):
        if want <= 0:
            continue
        if node.requested.get(r, 0) + want > node.allocatable.get(r, 0):
            out.append(Failure(f"Insufficient {r}", False))
    return out


# -- scores ----------------------------------------------------------------------------------


def _least_allocated(pod: PodInfo, node: NodeInfo) -> float:
    scores = []
    for used, alloc in ((node.nonzero_cpu + pod.nonzero_cpu, node.allocatable.get("cpu", 0)), (node.nonzero_mem + pod.nonzero_mem, node.allocatable.get("memory", 0))):
        scores.append(0.0 if alloc <= 0 or used > alloc else (alloc - used) * MAX_SCORE / alloc)
    return sum(scores) / len(scores)


def _balanced(pod: PodInfo, node: NodeInfo) -> float:
    fr = []
    for used, alloc in ((node.nonzero_cpu + pod.nonzero_cpu, node.allocatable.get("cpu", 0)), (node.nonzero_mem + pod.nonzero_mem, node.allocatable.get("memory", 0))):
        fr.append(min(used / alloc, 1.0) if alloc > 0 else 1.0)
    std = abs(fr[0] - fr[1]) / 2
    return (1 - std) * MAX_SCORE


def _normalize(raw: dict[str, float], *, reverse: bool = False) -> dict[str, float]:
    """kube-scheduler's DefaultNormalizeScore: scale to 0..100 by the maximum."""
    top = max(raw.values(), default=0)
    if top <= 0:
        return {n: (MAX_SCORE if reverse else 0) for n in raw}
    out = {n: v * MAX_SCORE / top for n, v in raw.items()}
    return {n: MAX_SCORE - v for n, v in out.items()} if reverse else out


def score(pod: PodInfo, nodes: Sequence[NodeInfo], state: A.CycleState) -> dict[str, float]:
    """The weighted total of every score for each feasible node."""
    total = {n.name: 0.0 for n in nodes}
    prefer_no = {n.name: float(sum(1 for t in n.taints if t.get("effect") == PREFER_NO_SCHEDULE and not any(tolerates(tol, t) for tol in pod.tolerations if tol.get("effect") in (None, "", PREFER_NO_SCHEDULE)))) for n in nodes}
    parts = [
        (WEIGHTS["taint"], _normalize(prefer_no, reverse=True)),
        (WEIGHTS["least_allocated"], {n.name: _least_allocated(pod, n) for n in nodes}),
        (WEIGHTS["balanced"], {n.name: _balanced(pod, n) for n in nodes}),
    ]
    if pod.preferred_node_terms:
        parts.append((WEIGHTS["node_affinity"], _normalize({n.name: float(sum(w for w, t in pod.preferred_node_terms if term_matches(n, t))) for n in nodes})))
    aff = A.score_affinity(pod, nodes, state)
    if aff is not None:
        parts.append((WEIGHTS["pod_affinity"], aff))
    spread = A.score_spread(pod, nodes, state)
    if spread is not None:
        parts.append((WEIGHTS["spread"], spread))
    for w, scores in parts:
        for name, s in scores.items():
            total[name] += w * s
    return total


# -- one scheduling attempt --------------------------------------------------------------------


def feasible_to_find(n_nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes kube-scheduler finds before it stops filtering (adaptive:
    50% of the nodes minus 1% per 125 nodes, at least 5%, never fewer than 100)."""
    if n_nodes < MIN_FEASIBLE:
        return n_nodes
    pct = percentage or max(50 - n_nodes // 125, MIN_FEASIBLE_PERCENT)
    return max(n_nodes * pct // 100, MIN_FEASIBLE)


@dataclass(slots=True)
class Result:
    node: str | None
    #: per failing node, the reasons (kube-scheduler's NodeToStatusMap)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    n_nodes: int = 0
    next_start: int = 0

    @property
    def message(self) -> str:
        return fit_error(self.n_nodes, self.failures)


def schedule(pod: PodInfo, nodes: Sequence[NodeInfo], bound: Iterable[PodInfo], *, start: int = 0, rng: random.Random | None = None) -> Result:
    """Filter the nodes (from ``start``, round robin, until enough fit), score those that
    fit, pick the best. ``bound``: every pod bound to a node (for pod affinity and
    spreading; only read when the pod or an existing pod has such terms)."""
    n = len(nodes)
    res = Result(None, n_nodes=n)
    if n == 0:
        return res
    state = A.prepare(pod, nodes, bound)
    want = feasible_to_find(n)
    fits: list[NodeInfo] = []
    i = 0
    for i in range(n):
        node = nodes[(start + i) % n]
        fails = filter_node(pod, node, state)
        if fails:
            res.failures[node.name] = fails
        else:
            fits.append(node)
            if len(fits) >= want:
                break
    res.next_start = (start + i + 1) % n
    if not fits:
        return res
    if len(fits) == 1:
        res.node = fits[0].name
        return res
    scores = score(pod, fits, state)
    best = max(scores.values())
    top = [name for name, s in scores.items() if s == best]
    res.node = top[0] if len(top) == 1 else (rng or random).choice(top)
    return res


def fit_error(n_nodes: int, failures: Mapping[str, list[Failure]]) -> str:
    """The ``FailedScheduling`` message kube-scheduler prints, e.g. ``0/3 nodes are
    available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 node(s)
    didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3
    Preemption is not helpful for scheduling.`` (edgebus does not preempt: a node that
    failed only for reasons preemption could address has no victims to offer)."""
    if n_nodes == 0:
        return NO_NODES
    counts: dict[str, int] = {}
    for fails in failures.values():
        for f in fails:
            counts[f.reason] = counts.get(f.reason, 0) + 1
    msg = f"0/{n_nodes} nodes are available:"
    hist = sorted(f"{v} {k}" for k, v in counts.items())
    if hist:
        msg += f" {', '.join(hist)}."
    pre: dict[str, int] = {}
    for fails in failures.values():
        k = PREEMPTION_NOT_HELPFUL if any(f.unresolvable for f in fails) else NO_VICTIMS
        pre[k] = pre.get(k, 0) + 1
    pre_hist = sorted(f"{v} {k}" for k, v in pre.items())
    msg += f" preemption: 0/{n_nodes} nodes are available: {', '.join(pre_hist)}."
    return msg
