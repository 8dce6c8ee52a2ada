"""Inter-pod affinity and topology spreading (pure): the counts kube-scheduler's
PreFilter computes once per scheduling attempt (:func:`prepare`), then the per-node
filters and the scores.

Topology domains are node label values (``kubernetes.io/hostname``, a zone or site
label, any key). Only pods bound to a node count; pods being deleted do not count for
spreading.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgebus.objects.selectors import selector_matches
from edgebus.objects.taints import NO_EXECUTE, NO_SCHEDULE, tolerates
from services.scheduler.model import HOSTNAME, ZONE, AffinityTerm, NodeInfo, PodInfo, SpreadConstraint

if TYPE_CHECKING:
    from services.scheduler.logic import Failure

MAX_SCORE = 100
#: the implicit weight of an existing pod's required affinity term matching the incoming pod
HARD_AFFINITY_WEIGHT = 1
#: kube-scheduler's system default spreading (pods of one controller), ScheduleAnyway
DEFAULT_SPREAD = ((HOSTNAME, 3), (ZONE, 5))

AFFINITY_MISMATCH = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_MISMATCH = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
SPREAD_MISMATCH = "node(s) didn't match pod topology spread constraints"
SPREAD_MISSING_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"

Pair = tuple[str, str]


def term_matches(term: AffinityTerm, pod: PodInfo) -> bool:
    if term.namespaces is not None and pod.namespace not in term.namespaces:
        return False
    return selector_matches(term.selector, pod.labels)


@dataclass(slots=True)
class Spread:
    c: SpreadConstraint
    counts: dict[str, int]  # domain value -> matching pods
    min_count: int
    self_match: int


@dataclass(slots=True)
class CycleState:
    existing_anti: set[Pair] = field(default_factory=set)
    affinity_counts: dict[Pair, int] = field(default_factory=dict)
    anti_counts: dict[Pair, int] = field(default_factory=dict)
    self_affine: bool = False
    hard: list[Spread] = field(default_factory=list)
    soft: list[Spread] = field(default_factory=list)
    affinity_scores: dict[Pair, float] = field(default_factory=dict)


def _eligible(pod: PodInfo, node: NodeInfo, c: SpreadConstraint, keys: Sequence[str]) -> bool:
    from services.scheduler.logic import node_affinity_ok

    if any(k not in node.labels for k in keys):
        return False
    if c.honor_affinity and not node_affinity_ok(pod, node):
        return False
    if c.honor_taints:
        for t in node.taints:
            if t.get("effect") in (NO_SCHEDULE, NO_EXECUTE) and not any(tolerates(tol, t) for tol in pod.tolerations):
                return False
    return True


def _spread(pod: PodInfo, nodes: Sequence[NodeInfo], constraints: Sequence[SpreadConstraint], *, hard: bool) -> list[Spread]:
    keys = [c.topology_key for c in constraints]
    out = []
    for c in constraints:
        counts: dict[str, int] = {}
        for n in nodes:
            if not _eligible(pod, n, c, keys if hard else [c.topology_key]):
                continue
            v = n.labels[c.topology_key]
            counts[v] = counts.get(v, 0) + sum(
                1 for p in n.pods.values() if p.namespace == pod.namespace and not p.terminating and selector_matches(c.selector, p.labels)
            )
        low = min(counts.values(), default=0)
        if len(counts) < c.min_domains:
            low = 0
        out.append(Spread(c, counts, low, 1 if selector_matches(c.selector, pod.labels) else 0))
    return out


def _default_spread(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[Spread]:
    """Pods of one controller spread over hosts and zones (scores only)."""
    out = []
    for key, skew in DEFAULT_SPREAD:
        counts: dict[str, int] = {}
        for n in nodes:
            if key not in n.labels:
                continue
            v = n.labels[key]
            counts[v] = counts.get(v, 0) + n.owners.get(pod.owner, 0)
        if counts:
            out.append(Spread(SpreadConstraint(skew, key, False, None), counts, min(counts.values()), 1))
    return out


def prepare(pod: PodInfo, nodes: Sequence[NodeInfo], bound: Iterable[PodInfo]) -> CycleState:
    """The per-attempt counts. ``bound`` is read only when needed: when the incoming pod
    has pod (anti-)affinity terms, or when a bound pod has some (then every bound pod with
    terms is visited — the cache passes only those when the incoming pod has none)."""
    st = CycleState()
    node_of = {n.name: n for n in nodes}
    wants_all = pod.has_pod_affinity
    for p in bound:
        n = node_of.get(p.node)
        if n is None or p.key == pod.key:
            continue
        # existing pods' required anti-affinity against the incoming pod
        for t in p.anti_affinity:
            if t.topology_key in n.labels and term_matches(t, pod):
                st.existing_anti.add((t.topology_key, n.labels[t.topology_key]))
        # existing pods' terms that score the incoming pod (symmetry)
        for t, w in ((t, HARD_AFFINITY_WEIGHT) for t in p.affinity):
            if t.topology_key in n.labels and term_matches(t, pod):
                _add(st.affinity_scores, (t.topology_key, n.labels[t.topology_key]), w)
        for t in p.preferred_affinity:
            if t.topology_key in n.labels and term_matches(t, pod):
                _add(st.affinity_scores, (t.topology_key, n.labels[t.topology_key]), t.weight)
        for t in p.preferred_anti_affinity:
            if t.topology_key in n.labels and term_matches(t, pod):
                _add(st.affinity_scores, (t.topology_key, n.labels[t.topology_key]), -t.weight)
        if not wants_all:
            continue
        # the incoming pod's terms against existing pods
        if pod.affinity and all(term_matches(t, p) for t in pod.affinity):
            for t in pod.affinity:
                if t.topology_key in n.labels:
                    _add(st.affinity_counts, (t.topology_key, n.labels[t.topology_key]), 1)
        for t in pod.anti_affinity:
            if t.topology_key in n.labels and term_matches(t, p):
                _add(st.anti_counts, (t.topology_key, n.labels[t.topology_key]), 1)
        for t in pod.preferred_affinity:
            if t.topology_key in n.labels and term_matches(t, p):
                _add(st.affinity_scores, (t.topology_key, n.labels[t.topology_key]), t.weight)
        for t in pod.preferred_anti_affinity:
            if t.topology_key in n.labels and term_matches(t, p):
                _add(st.affinity_scores, (t.topology_key, n.labels[t.topology_key]), -t.weight)
    st.self_affine = bool(pod.affinity) and all(term_matches(t, pod) for t in pod.affinity)
    hard = [c for c in pod.spread if c.hard]
    soft = [c for c in pod.spread if not c.hard]
    st.hard = _spread(pod, nodes, hard, hard=True) if hard else []
    if soft:
        st.soft = _spread(pod, nodes, soft, hard=False)
    elif not pod.spread and pod.owner:
        st.soft = _default_spread(pod, nodes)
    return st


def _add(m: dict[Pair, float] | dict[Pair, int], k: Pair, v: float) -> None:
    m[k] = m.get(k, 0) + v  # type: ignore[assignment]


# -- filters -------------------------------------------------------------------------------


def filter_affinity(pod: PodInfo, node: NodeInfo, st: CycleState) -> list[Failure]:
    from services.scheduler.logic import Failure

    for key, value in st.existing_anti:
        if node.labels.get(key) == value:
            return [Failure(EXISTING_ANTI_AFFINITY, False)]
    for t in pod.anti_affinity:
        v = node.labels.get(t.topology_key)
        if v is not None and st.anti_counts.get((t.topology_key, v), 0) > 0:
            return [Failure(ANTI_AFFINITY_MISMATCH, False)]
    if pod.affinity:
        exist = True
        for t in pod.affinity:
            v = node.labels.get(t.topology_key)
            if v is None:
                return [Failure(AFFINITY_MISMATCH, True)]
            if st.affinity_counts.get((t.topology_key, v), 0) <= 0:
                exist = False
        if not exist and not (not st.affinity_counts and st.self_affine):
            return [Failure(AFFINITY_MISMATCH, True)]
    return []


def filter_spread(pod: PodInfo, node: NodeInfo, st: CycleState) -> list[Failure]:
    from services.scheduler.logic import Failure

    for s in st.hard:
        v = node.labels.get(s.c.topology_key)
        if v is None:
            return [Failure(SPREAD_MISSING_LABEL, True)]
        if s.counts.get(v, 0) + s.self_match - s.min_count > s.c.max_skew:
            return [Failure(SPREAD_MISMATCH, False)]
    return []


# -- scores ----------------------------------------------------------------------------------


def score_affinity(pod: PodInfo, nodes: Sequence[NodeInfo], st: CycleState) -> dict[str, float] | None:
    if not st.affinity_scores:
        return None
    raw = {n.name: float(sum(w for (k, v), w in st.affinity_scores.items() if n.labels.get(k) == v)) for n in nodes}
    lo, hi = min(raw.values()), max(raw.values())
    if hi - lo <= 0:
        return {n: 0.0 for n in raw}
    return {n: MAX_SCORE * (s - lo) / (hi - lo) for n, s in raw.items()}


def score_spread(pod: PodInfo, nodes: Sequence[NodeInfo], st: CycleState) -> dict[str, float] | None:
    if not st.soft:
        return None
    raw: dict[str, float] = {}
    for n in nodes:
        total = 0.0
        counted = False
        for s in st.soft:
            v = n.labels.get(s.c.topology_key)
            if v is None:
                continue
            counted = True
            total += s.counts.get(v, 0) * math.log(len(s.counts) + 2) + (s.c.max_skew - 1)
        if counted:
            raw[n.name] = total
    if not raw:
        return None
    lo, hi = min(raw.values()), max(raw.values())
    out = {n.name: 0.0 for n in nodes}
    for name, score in raw.items():
        out[name] = MAX_SCORE if hi == 0 else MAX_SCORE * (hi + lo - score) / hi
    return out


__all__ = ["CycleState", "filter_affinity", "filter_spread", "prepare", "score_affinity", "score_spread"]
