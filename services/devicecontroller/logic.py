"""Pure rules of devicecontroller: merging edge twin reports into Device status, and the
Event a rule firing becomes. No I/O.

Device status (KubeEdge's shape, values as strings, timestamps as Unix-millisecond strings)::

    status:
      state: online                 # online | offline | unhealthy | unknown | ok (as the mapper said)
      stateReason: ""               # why, when not online (edgebus)
      stateTimestamp: "1700..."     # edge time of the state (edgebus)
      lastOnlineTime: "2026-...Z"
      twins:
        - propertyName: temperature
          reported: {value: "21.5", metadata: {timestamp: "1700...", type: float}}   # the mapper's type
          observedDesired: {value: "22", metadata: {timestamp: "1700...", source: cloud}}

Latest wins, per twin: a reported value (or observed desired value, or state) replaces the
stored one only if its edge timestamp is newer, so a report delayed by an outage never
overwrites a newer one.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from edgebus.errors import InvalidMessage
from edgebus.objects import DEVICES
from edgebus.objects.devices import model_props
from edgebus.order import UpOrder

STATES = ("online", "offline", "unhealthy", "unknown", "ok")


def rfc3339_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ts(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def check_report(content: Any) -> dict[str, Any]:
    """The report, or :class:`InvalidMessage` when it is not shaped like one."""
    if not isinstance(content, dict):
        raise InvalidMessage("device report must be a map")
    twins = content.get("twins")
    if not isinstance(twins, dict):
        raise InvalidMessage("device report needs a 'twins' map")
    for name, t in twins.items():
        if not isinstance(name, str) or not isinstance(t, dict):
            raise InvalidMessage("device report twins must map property names to maps")
        for k in ("reported", "desired"):
            part = t.get(k)
            if part is None:
                continue
            if not isinstance(part, dict) or not isinstance(part.get("value"), str) or not isinstance(part.get("ts"), int):
                raise InvalidMessage(f"twin {name}.{k} needs a string value and an integer ts")
    st = content.get("state")
    if st is not None and (not isinstance(st, dict) or st.get("value") not in STATES or not isinstance(st.get("ts"), int)):
        raise InvalidMessage("device report state must be {value, reason, ts} with a known state")
    return content


#: Annotation: per twin part (``<twin>.reported``, ``<twin>.desired``, ``state``) the node's
#: outbox order (``<seq>@<outbox>``) of the report applied - the edge's clock may jump, its
#: outbox sequence never goes back
TWIN_ORDER = "edgebus.io/twin-order"


def _orders(dev: dict[str, Any]) -> dict[str, str]:
    raw = ((dev.get("metadata") or {}).get("annotations") or {}).get(TWIN_ORDER)
    try:
        out = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in out.items()} if isinstance(out, dict) else {}


def _newer(orders: dict[str, str], part: str, order: UpOrder | None, ts: int, applied_ts: int) -> bool:
    """Is this part of the report newer than the one applied: in outbox order when both
    carry it, else by the edge timestamps."""
    if order is not None:
        verdict = order.newer_than(UpOrder.parse(orders.get(part)))
        if verdict is not None:
            return verdict
    return ts > applied_ts


def merge_report(dev: dict[str, Any], report: dict[str, Any], model: dict[str, Any] | None = None, order: UpOrder | None = None) -> bool:
    """Merge an edge report into ``dev['status']`` (in place); True when anything changed.
    ``order``: the report's place in its node's outbox (see :mod:`edgebus.order`)."""
    orders = _orders(dev)
    before = dict(orders)
    changed = _merge(dev, report, model, order, orders)
    if order is not None and orders != before:
        dev.setdefault("metadata", {}).setdefault("annotations", {})[TWIN_ORDER] = json.dumps(orders, sort_keys=True)
    return changed


def _merge(dev: dict[str, Any], report: dict[str, Any], model: dict[str, Any] | None, order: UpOrder | None, orders: dict[str, str]) -> bool:
    st = dev.setdefault("status", {})
    if not isinstance(st, dict):
        st = dev["status"] = {}
    twins = st.setdefault("twins", [])
    if not isinstance(twins, list):
        twins = st["twins"] = []
    by_name = {t.get("propertyName"): t for t in twins if isinstance(t, dict)}
    types = {n: p.type for n, p in model_props(model).items()} if model else {}
    changed = False
    for name, t in sorted(report.get("twins", {}).items()):
        entry = by_name.get(name)
        if entry is None:
            entry = {"propertyName": name}
            twins.append(entry)
            by_name[name] = entry
        rep = t.get("reported")
        if rep is not None:
            cur = entry.get("reported") or {}
            if _newer(orders, f"{name}.reported", order, rep["ts"], _ts((cur.get("metadata") or {}).get("timestamp"))):
                md = {"timestamp": str(rep["ts"])}
                if isinstance(rep.get("type"), str) and rep["type"]:
                    md["type"] = rep["type"]  # the type the mapper reported, as KubeEdge keeps it
                elif name in types:
                    md["type"] = types[name].lower()
                entry["reported"] = {"value": rep["value"], "metadata": md}
                if order is not None:
                    orders[f"{name}.reported"] = str(order)
                changed = True
        des = t.get("desired")
        if des is not None:
            cur = entry.get("observedDesired") or {}
            if _newer(orders, f"{name}.desired", order, des["ts"], _ts((cur.get("metadata") or {}).get("timestamp"))):
                entry["observedDesired"] = {"value": des["value"], "metadata": {"timestamp": str(des["ts"]), "source": str(des.get("source") or "")}}
                if order is not None:
                    orders[f"{name}.desired"] = str(order)
                changed = True
    twins.sort(key=lambda e: str(e.get("propertyName")))
    state = report.get("state")
    if isinstance(state, dict) and _newer(orders, "state", order, state["ts"], _ts(st.get("stateTimestamp"))):
        if order is not None:
            orders["state"] = str(order)
        st["state"] = state["value"]
        st["stateTimestamp"] = str(state["ts"])
        if state.get("reason"):
            st["stateReason"] = str(state["reason"])[:500]
        else:
            st.pop("stateReason", None)
        changed = True
    last = report.get("lastOnline")
    if isinstance(last, int) and last > 0:
        t = rfc3339_ms(last)
        if st.get("lastOnlineTime", "") < t:
            st["lastOnlineTime"] = t
            changed = True
    return changed


def event_name(device: str, event_id: str) -> str:
    return f"{device}.{event_id}"


def check_event(content: Any) -> dict[str, Any]:
    if not isinstance(content, dict) or not isinstance(content.get("event"), dict):
        raise InvalidMessage("rule event needs an 'event' map")
    ev = content["event"]
    for k in ("id", "rule", "namespace", "device", "message"):
        if not isinstance(ev.get(k), str) or not ev.get(k):
            raise InvalidMessage(f"rule event needs a string {k!r}")
    if not isinstance(ev.get("time"), int):
        raise InvalidMessage("rule event needs an integer 'time' (ms)")
    if not all(c in "0123456789abcdef" for c in ev["id"]) or len(ev["id"]) > 64:
        raise InvalidMessage("rule event id must be hex")
    return ev


def rule_event(ev: dict[str, Any], node: str, uid: str = "") -> dict[str, Any]:
    """The Kubernetes Event a rule firing becomes (named after the firing: created once)."""
    ts = int(ev["time"])
    involved = {"apiVersion": DEVICES.api_version, "kind": DEVICES.kind, "name": ev["device"], "namespace": ev["namespace"], "fieldPath": f"spec.rules{{{ev['rule']}}}"}
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(ev["device"], ev["id"]),
            "namespace": ev["namespace"],
            "annotations": {"edgebus.io/rule": ev["rule"], "edgebus.io/node": node, "edgebus.io/event-id": ev["id"]},
        },
        "involvedObject": involved,
        "reason": "RuleFired",
        "message": ev["message"],
        "type": "Normal",
        "action": "SetDesired",
        "source": {"component": "devicetwin", "host": node},
        "reportingComponent": "edgebus.io/devicetwin",
        "reportingInstance": node,
        "firstTimestamp": rfc3339_ms(ts),
        "lastTimestamp": rfc3339_ms(ts),
        "eventTime": rfc3339_micro(ts),
        "count": 1,
    }
