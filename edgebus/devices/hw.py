"""KubeEdge's device messages (the JSON bodies of the ``$hw/events/...`` topics). Pure.

Shapes follow KubeEdge's devicetwin (``MsgTwin``: ``expected`` / ``actual`` each a
``{value, metadata: {timestamp}}``, plus ``metadata: {type}``); timestamps are Unix
milliseconds. edgebus adds fields KubeEdge clients ignore: ``trigger`` on a delta (which
report caused it), ``errors`` (per property) on results, and the device and model specs in
membership entries (so a mapper needs nothing but the bus). An ``expected`` value that is
empty is no desired value (the mapper-framework sends its current desired value, often
empty, with every report).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from edgebus import clock
from edgebus.errors import InvalidMessage
from edgebus.objects.shapes import as_dict


def now_ms() -> int:
    return clock.now_ms()


def new_event_id() -> str:
    return uuid.uuid4().hex


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def loads(data: bytes) -> dict[str, Any]:
    """A JSON object from an MQTT payload; anything else raises :class:`InvalidMessage`."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidMessage(f"payload must be a JSON object, got {type(obj).__name__}")
    return obj


def event_id_of(msg: dict[str, Any]) -> str:
    e = msg.get("event_id")
    return e if isinstance(e, str) else ""


def ts_of(v: Any, default: int) -> int:
    """A millisecond timestamp from a message field (int, or a numeric string)."""
    if isinstance(v, bool):
        return default
    if isinstance(v, int) and v > 0:
        return v
    if isinstance(v, float) and v > 0:
        return int(v)
    if isinstance(v, str):
        try:
            return int(float(v))
        except ValueError:
            return default
    return default


# -- building -------------------------------------------------------------------------


def twin_update(values: dict[str, str], *, ts: int | None = None, event_id: str | None = None, types: dict[str, str] | None = None) -> dict[str, Any]:
    """What a mapper publishes on ``.../twin/update``: reported (``actual``) values."""
    t = ts or now_ms()
    twin = {}
    for k, v in values.items():
        entry: dict[str, Any] = {"actual": {"value": v, "metadata": {"timestamp": t}}}
        if types and k in types:
            entry["metadata"] = {"type": types[k].lower()}
        twin[k] = entry
    return {"event_id": event_id or new_event_id(), "timestamp": t, "twin": twin}


def state_update(state: str, reason: str = "", *, event_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": event_id or new_event_id(), "timestamp": now_ms(), "state": state}
    if reason:
        out["reason"] = reason
    return out


def request(event_id: str | None = None) -> dict[str, Any]:
    """A ``twin/get`` or ``membership/get`` request."""
    return {"event_id": event_id or new_event_id(), "timestamp": now_ms()}


def result(event_id: str, *, twin: dict[str, Any] | None = None, errors: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": event_id, "timestamp": now_ms()}
    if twin is not None:
        out["twin"] = twin
    if errors:
        out["code"] = 400
        out["reason"] = "; ".join(f"{k}: {v}" for k, v in errors.items())
        out["errors"] = errors
    out.update(extra)
    return out


def error_result(event_id: str, reason: str, code: int = 400) -> dict[str, Any]:
    return {"event_id": event_id, "timestamp": now_ms(), "code": code, "reason": reason}


# -- parsing --------------------------------------------------------------------------


def reported_values(msg: dict[str, Any]) -> tuple[dict[str, tuple[Any, int]], dict[str, tuple[Any, int]], dict[str, str]]:
    """From a ``twin/update``: ``(actual, expected, errors)``; each value with its timestamp.

    ``actual`` are reported values (from a mapper), ``expected`` desired values (from an
    edge application). A property whose entry is malformed lands in ``errors``."""
    twin = msg.get("twin")
    if not isinstance(twin, dict) or not twin:
        raise InvalidMessage("twin/update needs a non-empty 'twin' object")
    default_ts = ts_of(msg.get("timestamp"), now_ms())
    actual: dict[str, tuple[Any, int]] = {}
    expected: dict[str, tuple[Any, int]] = {}
    errors: dict[str, str] = {}
    for name, entry in twin.items():
        if not isinstance(entry, dict):
            errors[str(name)] = "twin entry must be an object with 'actual' or 'expected'"
            continue
        found = False
        for key, into in (("actual", actual), ("expected", expected)):
            part = entry.get(key)
            if part is None:
                continue
            found = True
            if not isinstance(part, dict) or "value" not in part:
                errors[str(name)] = f"'{key}' must be an object with a 'value'"
                continue
            if key == "expected" and part.get("value") in ("", None):
                continue
            md = as_dict(part.get("metadata"))
            into[str(name)] = (part.get("value"), ts_of(md.get("timestamp"), default_ts))
        if not found:
            errors[str(name)] = "twin entry has neither 'actual' nor 'expected'"
    return actual, expected, errors


def reported_types(msg: dict[str, Any]) -> dict[str, str]:
    """The value type a ``twin/update`` names per property (``twin.<p>.metadata.type``)."""
    out: dict[str, str] = {}
    twin = msg.get("twin")
    for name, entry in (twin.items() if isinstance(twin, dict) else []):
        md = entry.get("metadata") if isinstance(entry, dict) else None
        t = md.get("type") if isinstance(md, dict) else None
        if isinstance(t, str) and t and isinstance(entry.get("actual"), dict):
            out[str(name)] = t[:64]
    return out


def state_result(event_id: str, name: str, state: str, last_online: str) -> dict[str, Any]:
    """``state/update/result``: KubeEdge's ``{event_id, timestamp, device: {name, state, lastOnlineTime}}``."""
    device = {"name": name, "state": state}
    if last_online:
        device["lastOnlineTime"] = last_online
    return {"event_id": event_id, "timestamp": now_ms(), "device": device}
