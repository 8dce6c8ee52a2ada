"""KubeEdge's twin shapes and the bodies devicetwin sends: pure, like ``logic`` (no I/O; the
event ids and times are passed in).

``MsgTwin`` entries for results, deltas and membership, the ``twin/update/document``, the
``membership`` bodies, the status report for the cloud and the local API's view."""

from __future__ import annotations

import datetime as dt
from typing import Any

from edgebus.devices import hw
from edgebus.errors import InvalidMessage
from edgebus.objects import devices as d
from services.devicetwin.logic import DeviceInfo, Key, new_twin


def value_type(twin: dict[str, Any], info: DeviceInfo, name: str) -> str:
    """A twin's ``metadata.type``: the one the mapper reported, else the model's (lower case)."""
    p = (twin.get("props") or {}).get(name) or {}
    if p.get("type"):
        return str(p["type"])
    prop = info.props.get(name)
    return prop.type.lower() if prop else "string"


def msg_entry(twin: dict[str, Any], info: DeviceInfo, name: str) -> dict[str, Any]:
    """One property in KubeEdge's ``MsgTwin`` shape: ``expected`` / ``actual`` each
    ``{value, metadata: {timestamp}}``, and ``metadata: {type}``."""
    p = (twin.get("props") or {}).get(name) or {}
    entry: dict[str, Any] = {"metadata": {"type": value_type(twin, info, name)}}
    if isinstance(p.get("desired"), dict):
        entry["expected"] = {"value": p["desired"]["value"], "metadata": {"timestamp": p["desired"]["ts"]}}
    if isinstance(p.get("reported"), dict):
        entry["actual"] = {"value": p["reported"]["value"], "metadata": {"timestamp": p["reported"]["ts"]}}
    return entry


def msg_twin(twin: dict[str, Any], info: DeviceInfo, *, with_expected_only: bool = False) -> dict[str, Any]:
    """The twin in KubeEdge's ``MsgTwin`` shape, for results, deltas and membership (a delta
    lists only the twins that have an expected value, as KubeEdge's does)."""
    out = {}
    for name in info.props:
        entry = msg_entry(twin, info, name)
        if with_expected_only and "expected" not in entry:
            continue
        out[name] = entry
    return out


def document(before: dict[str, dict[str, Any]], twin: dict[str, Any], info: DeviceInfo, names: list[str]) -> dict[str, Any]:
    """``twin/update/document``'s twins: per changed property ``{last, current}`` (``last`` is
    null for a property seen for the first time)."""
    return {n: {"last": before.get(n), "current": msg_entry(twin, info, n)} for n in names}


def rfc3339(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ms else ""


def membership_entry(twin: dict[str, Any], info: DeviceInfo) -> dict[str, Any]:
    """A device of ``membership/get/result`` and ``membership/updated``: KubeEdge's fields
    (``id`` is ``<namespace>/<name>``, as mappers-go builds its topics from it), plus the
    device's spec with its model's defaults applied, the model, and the protocol (edgebus)."""
    eff = d.effective_device(info.device, info.model)
    return {
        "id": f"{info.namespace}/{info.name}",
        "name": info.name,
        "namespace": info.namespace,
        "description": str(((info.device.get("metadata") or {}).get("annotations") or {}).get("description") or ""),
        "state": twin.get("state", "unknown"),
        "last_online": rfc3339(int(twin.get("lastOnline") or 0)),
        "attributes": {},
        "protocol": d.device_protocol(info.device),
        "twin": msg_twin(twin, info),
        "spec": eff.get("spec") or {},
        "model": (info.model or {}).get("spec") or {},
    }


def status_report(twin: dict[str, Any], now_ns: int) -> dict[str, Any]:
    """The upstream content for devicecontroller: every twin with its edge timestamps."""
    twins = {}
    for name, p in (twin.get("props") or {}).items():
        entry = {}
        if isinstance(p.get("reported"), dict):
            entry["reported"] = {**p["reported"], **({"type": p["type"]} if p.get("type") else {})}
        if isinstance(p.get("desired"), dict):
            entry["desired"] = p["desired"]
        if entry:
            twins[name] = entry
    return {
        "time": now_ns,
        "twins": twins,
        "state": {"value": twin.get("state", "unknown"), "reason": twin.get("stateReason", ""), "ts": int(twin.get("stateTs") or 0)},
        "lastOnline": int(twin.get("lastOnline") or 0),
    }


def event_id(data: bytes) -> str:
    """The ``event_id`` of a raw ``$hw`` message, or "" if it is not one."""
    try:
        return hw.event_id_of(hw.loads(data))
    except InvalidMessage:
        return ""


def not_member(key: Key, node: str) -> str:
    return f"device {key[0]}/{key[1]} is not a member of node {node}"


def delta_message(twin: dict[str, Any], info: DeviceInfo, delta: dict[str, str], event_id: str, now: int, *, trigger: str = "", rules: list[str] | None = None) -> dict[str, Any]:
    """The body of ``twin/update/delta``; ``trigger`` names the update (and rules) behind it."""
    body: dict[str, Any] = {"event_id": event_id, "timestamp": now, "twin": msg_twin(twin, info, with_expected_only=True), "delta": delta}
    if trigger or rules:
        body["trigger"] = {"event_id": trigger, "rules": rules or []}
    return body


def membership(twins: dict[Key, dict[str, Any]], infos: dict[Key, DeviceInfo], event_id: str, now: int) -> dict[str, Any]:
    """The body of ``membership/get/result``: every member device, sorted."""
    devices = [membership_entry(twins.get(k) or new_twin(), info) for k, info in sorted(infos.items())]
    return {"event_id": event_id, "timestamp": now, "devices": devices}


def membership_updated(twins: dict[Key, dict[str, Any]], infos: dict[Key, DeviceInfo], added: list[Key], removed: list[Key], event_id: str, now: int) -> dict[str, Any]:
    """The body of ``membership/updated``."""
    return {
        "event_id": event_id,
        "timestamp": now,
        "added_devices": [membership_entry(twins.get(k) or new_twin(), infos[k]) for k in added if k in infos],
        "removed_devices": [{"id": f"{k[0]}/{k[1]}", "name": k[1], "namespace": k[0]} for k in removed],
    }


def twins_view(node: str, twins: dict[Key, dict[str, Any]], infos: dict[Key, DeviceInfo], firings: int) -> dict[str, Any]:
    """The local API's ``twins`` answer: each member device's twin, state and rule results."""
    out = {}
    for key, info in infos.items():
        twin = twins.get(key) or new_twin()
        out[f"{key[0]}/{key[1]}"] = {"twin": msg_twin(twin, info), "state": twin.get("state"), "stateReason": twin.get("stateReason", ""), "rules": twin.get("rules", {})}
    return {"node": node, "devices": out, "firings": firings}
