"""Pure rules of cloudhub: node readiness and status ingestion (no I/O)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from edgebus.objects import taints
from edgebus.objects.resources import parse_time
from edgebus.order import UpOrder

#: Annotation holding the edge-side time (ns) of the status report an object reflects.
STATUS_TIME = "edgebus.io/status-time"

#: Node status fields an edge may report (Ready is cloudhub's to decide).
NODE_STATUS_FIELDS = ("addresses", "nodeInfo", "capacity", "allocatable", "daemonEndpoints", "images", "volumesInUse", "runtimeHandlers")


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(node: dict[str, Any]) -> dict[str, Any] | None:
    return condition(node, "Ready")


#: a node's local store is full (reported by its metamanager)
DISK_PRESSURE = "DiskPressure"


def condition(node: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None


def condition_status(node: dict[str, Any], type_: str) -> str | None:
    c = condition(node, type_)
    return str(c.get("status")) if c else None


def set_ready(node: dict[str, Any], status: str, reason: str, message: str, now: dt.datetime, *, heartbeat: bool) -> dict[str, Any]:
    """Set the Ready condition (lastTransitionTime only moves when the status changes)."""
    st = node.setdefault("status", {})
    conds = st.setdefault("conditions", [])
    cur = ready_condition(node)
    ts = rfc3339(now)
    if cur is None:
        cur = {"type": "Ready", "lastTransitionTime": ts}
        conds.append(cur)
    if cur.get("status") != status:
        cur["lastTransitionTime"] = ts
    cur.update(status=status, reason=reason, message=message)
    if heartbeat:
        cur["lastHeartbeatTime"] = ts
    cur.setdefault("lastHeartbeatTime", ts)
    return node


def needs_heartbeat_write(node: dict[str, Any], now: dt.datetime, grace: float) -> bool:
    cur = ready_condition(node)
    if cur is None or cur.get("status") != "True":
        return True
    last = parse_time(cur.get("lastHeartbeatTime"))
    return last is None or (now - last).total_seconds() >= grace / 4


def reporter(source: str) -> str:
    """The name a node-status reporter is tracked under (the envelope's source service)."""
    s = (source or "").lower()
    return s if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", s) else "edge"


#: Annotation holding the node's outbox order (``<seq>@<outbox>``) of the report an object reflects.
STATUS_ORDER = "edgebus.io/status-order"


def _time_key(source: str | None) -> str:
    return STATUS_TIME if source is None else f"{STATUS_TIME}.{source}"


def _order_key(source: str | None) -> str:
    return STATUS_ORDER if source is None else f"{STATUS_ORDER}.{source}"


def report_is_newer(obj: dict[str, Any], report_time_ns: int, source: str | None = None, order: UpOrder | None = None) -> bool:
    """Stale status never overwrites newer (per reporter when ``source`` is given: several
    services report parts of a node). Newer in the node's outbox order when the report and
    the applied one both carry it - the edge's clock may jump, its outbox sequence never goes
    back - else by the edge time of the reports."""
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    if order is not None:
        verdict = order.newer_than(UpOrder.parse(ann.get(_order_key(source))))
        if verdict is not None:
            return verdict
    try:
        applied = int(ann.get(_time_key(source), "0"))
    except ValueError:
        applied = 0
    return report_time_ns > applied


def stamp(obj: dict[str, Any], report_time_ns: int, source: str | None = None, order: UpOrder | None = None) -> None:
    ann = obj.setdefault("metadata", {}).setdefault("annotations", {})
    ann[_time_key(source)] = str(report_time_ns)
    if order is not None:
        ann[_order_key(source)] = str(order)


def merge_node_status(node: dict[str, Any], reported: dict[str, Any]) -> dict[str, Any]:
    """Merge one reporter's part of a node's status. ``nodeInfo``, ``capacity`` and
    ``allocatable`` are merged key by key, and an empty value never erases a known one
    (edgehub does not know the container runtime's version, edged does); conditions are
    merged by type (Ready stays cloudhub's)."""
    st = node.setdefault("status", {})
    for k in NODE_STATUS_FIELDS:
        if k not in reported:
            continue
        v = reported[k]
        cur = st.get(k)
        if k in ("nodeInfo", "capacity", "allocatable") and isinstance(v, dict):
            merged = dict(cur) if isinstance(cur, dict) else {}
            for kk, vv in v.items():
                if vv not in ("", None) or kk not in merged:
                    merged[kk] = vv
            st[k] = merged
        else:
            st[k] = v
    conds = [c for c in st.get("conditions") or [] if isinstance(c, dict)]
    for c in reported.get("conditions") or []:
        if not isinstance(c, dict) or not isinstance(c.get("type"), str) or c.get("type") == "Ready":
            continue
        conds = [x for x in conds if x.get("type") != c["type"]]
        conds.append(c)
    st["conditions"] = conds
    return node


def new_node(name: str, labels: dict[str, str], reported: dict[str, Any] | None, arch: str = "amd64") -> dict[str, Any]:
    lbl = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "node-role.kubernetes.io/edge": "",
        "node-role.kubernetes.io/agent": "",
    }
    lbl.update(labels or {})
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": lbl},
        "spec": {},
        "status": {"conditions": []},
    }
    if reported:
        merge_node_status(node, reported)
    return node


# -- node lifecycle: unreachable nodes, their taints, their pods' readiness ----------------

#: a pod whose Ready condition cloudhub turned False because its node became unreachable
#: keeps the condition its node last reported here (JSON), to put back when the node returns
READY_BEFORE = "edgebus.io/ready-before-unreachable"


def heartbeat_fresh_at(stored_at: dt.datetime | None, now: dt.datetime, grace: float) -> bool:
    """A heartbeat counts only if the cloud stored it within the grace period: a backlog
    the cloud kept while cloudhub was away must not make a dead node look alive. (Both
    times are the cloud's; an edge's clock is never compared with them.)"""
    return stored_at is None or (now - stored_at).total_seconds() < grace


def with_lifecycle_taints(node: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """``node`` tainted ``node.kubernetes.io/unreachable`` NoExecute and NoSchedule."""
    spec = node.setdefault("spec", {})
    ts = taints.taints_of(node)
    ts = taints.with_taint(ts, taints.UNREACHABLE, taints.NO_SCHEDULE)
    ts = taints.with_taint(ts, taints.UNREACHABLE, taints.NO_EXECUTE, time_added=rfc3339(now))
    spec["taints"] = ts
    return node


def without_lifecycle_taints(node: dict[str, Any]) -> bool:
    """Remove the lifecycle taints; True if there were any."""
    spec = node.get("spec") or {}
    ts = taints.taints_of(node)
    kept = taints.without_taints(ts, taints.LIFECYCLE_TAINTS)
    if len(kept) == len(ts):
        return False
    if kept:
        spec["taints"] = kept
    else:
        spec.pop("taints", None)
    return True


def mark_unreachable(node: dict[str, Any], observed_heartbeat: str | None, now: dt.datetime) -> dict[str, Any] | None:
    """``node`` as NotReady (Ready=Unknown) and tainted, unless a heartbeat was recorded
    after ``observed_heartbeat`` (the evaluator's view is behind: it is not dead)."""
    cur = ready_condition(node)
    if cur is None or cur.get("status") != "True" or cur.get("lastHeartbeatTime") != observed_heartbeat:
        return None
    set_ready(node, "Unknown", "NodeStatusUnknown", "edgebus edge node stopped posting heartbeats.", now, heartbeat=False)
    return with_lifecycle_taints(node, now)


def _pod_ready(pod: dict[str, Any]) -> dict[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c
    return None


def pod_not_ready(pod: dict[str, Any], node: str, now: dt.datetime) -> dict[str, Any] | None:
    """The pod with ``Ready=False`` because its node is unreachable, as Kubernetes' node
    lifecycle controller marks it (only the Ready condition; ``ContainersReady`` keeps what
    the node reported), remembering the reported condition; None if nothing to do."""
    if (pod.get("spec") or {}).get("nodeName") != node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    cond = _pod_ready(pod)
    if cond is None or cond.get("status") != "True":
        return None
    ann = pod.setdefault("metadata", {}).setdefault("annotations", {})
    ann[READY_BEFORE] = json.dumps(cond, separators=(",", ":"), sort_keys=True)
    cond["status"] = "False"
    cond["lastTransitionTime"] = rfc3339(now)
    return pod


def pod_ready_restored(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The pod with the Ready condition its node last reported (the node is back and its
    report is still the latest); None if cloudhub did not change it."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    raw = ann.pop(READY_BEFORE, None)
    if raw is None:
        return None
    try:
        saved = json.loads(raw)
    except ValueError:
        return pod
    if not isinstance(saved, dict):
        return pod
    conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
    at = next((i for i, c in enumerate(conds) if c.get("type") == "Ready"), None)
    if at is None:
        conds.append(saved)
    else:
        conds[at] = saved
    pod.setdefault("status", {})["conditions"] = conds
    return pod


def eviction_at(pod: dict[str, Any], node_taints: list[dict[str, Any]]) -> float | None:
    """When (epoch seconds) the pod must leave a node with these NoExecute taints, or None.

    As Kubernetes for taints added by people: a pod that does not tolerate one leaves at
    once; one that tolerates it for ``tolerationSeconds`` leaves that long after the taint
    was added. Unlike Kubernetes, a node lifecycle taint (``unreachable``, ``not-ready``)
    evicts only pods that tolerate it *with* ``tolerationSeconds`` — nothing else: an
    unreachable edge node keeps running its pods, and the cloud does not replace them
    unless the workload opted into failover."""
    tols = taints.tolerations_of(pod)
    at: float | None = None
    for t in node_taints:
        if t.get("effect") != taints.NO_EXECUTE:
            continue
        added = parse_time(t.get("timeAdded"))
        base = added.timestamp() if added is not None else 0.0
        if not taints.tolerated(tols, t):
            if t.get("key") in taints.LIFECYCLE_TAINTS:
                continue
            when = base
        else:
            secs = taints.toleration_seconds(tols, t)
            if secs is None:
                continue
            when = base + secs
        at = when if at is None else min(at, when)
    return at


def outbox_backlog(report: Any, now: dt.datetime) -> str:
    """The Node annotation (:data:`names.ANN_OUTBOX_BACKLOG`) of a node's outbox backlog
    report: messages, bytes, oldest age (s) and when the cloud received it (raises
    ValueError on a report of the wrong shape)."""
    if not isinstance(report, dict):
        raise ValueError("an outbox report must be a map")
    out: dict[str, Any] = {}
    for key, kind in (("messages", int), ("bytes", int), ("oldestSeconds", float)):
        v = report.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v > 1e15:
            raise ValueError(f"outbox report: {key} must be a number >= 0")
        out[key] = kind(v)
    out["reportedAt"] = rfc3339(now)
    return json.dumps(out, separators=(",", ":"))
