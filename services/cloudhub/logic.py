"""Pure rules of cloudhub: node readiness and status ingestion (no I/O)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from edgebus.objects.resources import parse_time

#: Annotation holding the edge-side time (ns) of the status report an object reflects.
STATUS_TIME = "edgebus.io/status-time"

#: Node status fields an edge may report (Ready is cloudhub's to decide).
NODE_STATUS_FIELDS = ("addresses", "nodeInfo", "capacity", "allocatable", "daemonEndpoints", "images", "volumesInUse")


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ready_condition(node: dict[str, Any]) -> dict[str, Any] | None:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


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


def heartbeat_fresh(edge_time_ns: int, now_ns: int, grace: float) -> bool:
    """A heartbeat counts only if it was sent within the grace period (a backlog replayed
    after an outage must not make a dead node look alive)."""
    return abs(now_ns - edge_time_ns) < grace * 1e9


def needs_heartbeat_write(node: dict[str, Any], now: dt.datetime, grace: float) -> bool:
    cur = ready_condition(node)
    if cur is None or cur.get("status") != "True":
        return True
    last = parse_time(cur.get("lastHeartbeatTime"))
    return last is None or (now - last).total_seconds() >= grace / 4


def is_expired(node: dict[str, Any], now: dt.datetime, grace: float) -> bool:
    """Ready=True but no heartbeat recorded for longer than the grace period."""
    cur = ready_condition(node)
    if cur is None or cur.get("status") != "True":
        return False
    last = parse_time(cur.get("lastHeartbeatTime"))
    return last is None or (now - last).total_seconds() > grace


def reporter(source: str) -> str:
    """The name a node-status reporter is tracked under (the envelope's source service)."""
    s = (source or "").lower()
    return s if re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", s) else "edge"


def _time_key(source: str | None) -> str:
    return STATUS_TIME if source is None else f"{STATUS_TIME}.{source}"


def report_is_newer(obj: dict[str, Any], report_time_ns: int, source: str | None = None) -> bool:
    """Stale status never overwrites newer: compare with the report time already applied
    (per reporter when ``source`` is given: several services report parts of a node)."""
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        applied = int(ann.get(_time_key(source), "0"))
    except ValueError:
        applied = 0
    return report_time_ns > applied


def stamp(obj: dict[str, Any], report_time_ns: int, source: str | None = None) -> None:
    obj.setdefault("metadata", {}).setdefault("annotations", {})[_time_key(source)] = str(report_time_ns)


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
