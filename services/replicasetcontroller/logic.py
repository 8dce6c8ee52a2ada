"""What a ReplicaSet needs (pure; no I/O): which pods to adopt, release, create or delete,
and its status."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from edgebus.objects import labelselector
from edgebus.workloads import pods as P

#: at most this many pods are created or deleted in one pass (the rest in the next)
BURST = 500


@dataclass
class Plan:
    adopt: list[dict[str, Any]] = field(default_factory=list)
    release: list[dict[str, Any]] = field(default_factory=list)
    create: int = 0
    delete: list[dict[str, Any]] = field(default_factory=list)


def claim(rs: dict[str, Any], owned: list[dict[str, Any]], candidates: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(pods that are the ReplicaSet's, orphans to adopt, owned pods to release): a pod
    without a controller that the selector matches is adopted (not while the ReplicaSet is
    being deleted), an owned pod the selector no longer matches is released."""
    sel = (rs.get("spec") or {}).get("selector")
    mine = [p for p in owned if labelselector.matches(sel, p)]
    release = [p for p in owned if not labelselector.matches(sel, p)]
    adopt = []
    if not P.md(rs).get("deletionTimestamp"):
        adopt = [p for p in candidates if P.controller_of(p) is None and not P.is_terminating(p) and labelselector.matches(sel, p)]
    return mine + adopt, adopt, release


def plan(rs: dict[str, Any], mine: list[dict[str, Any]]) -> Plan:
    """How many pods to create, and which to delete, to reach ``spec.replicas``."""
    want = int((rs.get("spec") or {}).get("replicas") or 0)
    active = [p for p in mine if P.is_active(p)]
    diff = len(active) - want
    out = Plan()
    if diff < 0:
        out.create = min(-diff, BURST)
    elif diff > 0:
        out.delete = sorted(active, key=P.deletion_rank)[: min(diff, BURST)]
    return out


def status(rs: dict[str, Any], mine: list[dict[str, Any]], now: dt.datetime, *, failure: str | None = None, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = rs.get("spec") or {}
    mrs = int(spec.get("minReadySeconds") or 0)
    active = [p for p in mine if P.is_active(p)]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    st: dict[str, Any] = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(1 for p in active if all((P.md(p).get("labels") or {}).get(k) == v for k, v in labels.items())),
        "readyReplicas": sum(1 for p in active if P.is_ready(p)),
        "availableReplicas": sum(1 for p in active if P.is_available(p, mrs, now)),
        "observedGeneration": int(P.md(rs).get("generation") or 1),
    }
    conds = [c for c in (previous or {}).get("conditions") or [] if c.get("type") != "ReplicaFailure"]
    if failure:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        old = next((c for c in (previous or {}).get("conditions") or [] if c.get("type") == "ReplicaFailure"), None)
        conds.append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": failure, "lastTransitionTime": (old or {}).get("lastTransitionTime", stamp)})
    if conds:
        st["conditions"] = conds
    return st


def next_check(rs: dict[str, Any], mine: list[dict[str, Any]], now: dt.datetime) -> float | None:
    """Seconds until a ready pod becomes available (``minReadySeconds``)."""
    mrs = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    waits = [w for p in mine if P.is_active(p) and (w := P.available_in(p, mrs, now)) is not None]
    return min(waits) + 0.05 if waits else None
