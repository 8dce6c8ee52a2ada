"""Pure rules of devicetwin: twins, deltas, conflicts between desired-value sources, local
rules, device states, and which view of a Device or DeviceModel wins. No I/O: ``hw``,
``sync`` and ``dmi`` call these and then persist and publish (the bodies they publish are
built in ``shapes``).

A twin (one per device, msgpack in LMDB)::

    {"props": {name: {"reported": {"value", "ts"},
                      "desired":  {"value", "ts", "source"},   # source: cloud | edge | rule:<name>
                      "cloud": <last desired value seen in the Device spec, or None>}},
     "state": "online", "stateReason": "", "stateTs": ms, "lastOnline": ms,
     "rules": {rule name: last condition result}}

Conflict rules (docs/devices.md):

* reported values come only from the device side (``actual`` in ``twin/update``); per
  property, a report older than the stored one (by its timestamp) is ignored;
* desired values have three sources - the cloud (the Device spec), edge applications
  (``expected`` in ``twin/update``) and local rules. The edge acts on the latest decision
  made at the edge: a cloud value counts when it *changes* (not when the same spec is sent
  again), and a rule or an edge application overrides it until the cloud sends a different
  value.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from edgebus.errors import InvalidMessage
from edgebus.objects import devices as d

Key = tuple[str, str]
#: an object as metamanager last showed it (None: deleted) and its revision
Seen = tuple[dict[str, Any] | None, int]

#: the states KubeEdge's devicetwin accepts (case-insensitive; ``ok`` is what mappers-go and
#: the mapper-framework publish for a healthy device, and counts as online)
STATES = ("online", "offline", "unhealthy", "unknown", "ok")
ONLINE_STATES = ("online", "ok")
SOURCE_CLOUD = "cloud"
SOURCE_EDGE = "edge"


@dataclass
class DeviceInfo:
    """What devicetwin knows about a device: its object, its model, parsed."""

    namespace: str
    name: str
    device: dict[str, Any]
    model: dict[str, Any] | None
    props: dict[str, d.Prop] = field(default_factory=dict)
    rules: list[d.Rule] = field(default_factory=list)

    @classmethod
    def build(cls, device: dict[str, Any], model: dict[str, Any] | None) -> DeviceInfo:
        md = device.get("metadata") or {}
        return cls(
            namespace=str(md.get("namespace") or "default"),
            name=str(md.get("name") or ""),
            device=device,
            model=model,
            props=d.model_props(model) if model else {},
            rules=d.device_rules(device) if model else [],
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def new_twin() -> dict[str, Any]:
    return {"props": {}, "state": "unknown", "stateReason": "", "stateTs": 0, "lastOnline": 0, "rules": {}}


def _prop(twin: dict[str, Any], name: str) -> dict[str, Any]:
    return twin.setdefault("props", {}).setdefault(name, {})


def reported_value(twin: dict[str, Any], name: str) -> str | None:
    r = (twin.get("props") or {}).get(name, {}).get("reported")
    return r.get("value") if isinstance(r, dict) else None


def desired_value(twin: dict[str, Any], name: str) -> str | None:
    r = (twin.get("props") or {}).get(name, {}).get("desired")
    return r.get("value") if isinstance(r, dict) else None


@dataclass
class Applied:
    """The outcome of one ``twin/update``."""

    reported: list[str] = field(default_factory=list)  # properties whose reported value changed
    desired: list[str] = field(default_factory=list)  # properties whose desired value changed
    errors: dict[str, str] = field(default_factory=dict)
    stale: int = 0


def apply_reported(twin: dict[str, Any], info: DeviceInfo, actual: dict[str, tuple[Any, int]], out: Applied, types: dict[str, str] | None = None) -> None:
    """Reported values from the device side; ``types`` are the value types the mapper named
    (``metadata.type``), kept as KubeEdge keeps them."""
    for name, (raw, ts) in actual.items():
        prop = info.props.get(name)
        if prop is None:
            out.errors[name] = f"device {info.namespace}/{info.name} has no property {name}"
            continue
        try:
            value = d.format_value(prop.type, d.parse_value(prop.type, raw))
        except ValueError as exc:
            out.errors[name] = f"bad {prop.type} value: {exc}"
            continue
        p = _prop(twin, name)
        cur = p.get("reported")
        if isinstance(cur, dict) and ts < int(cur.get("ts") or 0):
            out.stale += 1
            continue
        p["reported"] = {"value": value, "ts": ts}
        if types and types.get(name):
            p["type"] = types[name]
        if not isinstance(cur, dict) or cur.get("value") != value:
            out.reported.append(name)


def set_desired(twin: dict[str, Any], name: str, value: str, ts: int, source: str) -> bool:
    """Set a desired value; True when the value (not just its source) changed."""
    p = _prop(twin, name)
    cur = p.get("desired")
    p["desired"] = {"value": value, "ts": ts, "source": source}
    return not isinstance(cur, dict) or cur.get("value") != value


def apply_expected(twin: dict[str, Any], info: DeviceInfo, expected: dict[str, tuple[Any, int]], now: int, out: Applied) -> None:
    """Desired values set by an edge application (``expected`` in ``twin/update``)."""
    for name, (raw, _ts) in expected.items():
        prop = info.props.get(name)
        if prop is None:
            out.errors[name] = f"device {info.namespace}/{info.name} has no property {name}"
            continue
        if not prop.writable:
            out.errors[name] = f"property {name} is {d.READ_ONLY}"
            continue
        try:
            value = d.format_value(prop.type, prop.check(raw))
        except ValueError as exc:
            out.errors[name] = str(exc)
            continue
        if set_desired(twin, name, value, now, SOURCE_EDGE):
            out.desired.append(name)


def apply_cloud_desired(twin: dict[str, Any], info: DeviceInfo, now: int) -> tuple[list[str], dict[str, str]]:
    """Adopt the desired values of the Device spec that changed since last seen.

    Returns (properties whose desired value changed, problems with values the spec holds)."""
    changed: list[str] = []
    problems: dict[str, str] = {}
    spec_values = d.desired_values(info.device)
    for name, raw in spec_values.items():
        prop = info.props.get(name)
        if prop is None:
            problems[name] = "no such property in the model"
            continue
        if not prop.writable:
            problems[name] = f"property {name} is {d.READ_ONLY}"
            continue
        try:
            value = d.format_value(prop.type, prop.check(raw))
        except ValueError as exc:
            problems[name] = str(exc)
            continue
        p = _prop(twin, name)
        if p.get("cloud") == value:
            continue  # the same cloud value again: an edge decision made since stays
        p["cloud"] = value
        if set_desired(twin, name, value, now, SOURCE_CLOUD):
            changed.append(name)
    for name, p in (twin.get("props") or {}).items():
        if name not in spec_values and p.get("cloud") is not None:
            p["cloud"] = None
            if (p.get("desired") or {}).get("source") == SOURCE_CLOUD:
                p.pop("desired", None)
    return changed, problems


@dataclass(frozen=True, slots=True)
class Firing:
    """One rule firing: recorded on the edge, reported to the cloud once as an Event."""

    id: str
    rule: str
    namespace: str
    device: str
    time: int
    property: str
    value: str
    set: dict[str, str]
    trigger: str

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "namespace": self.namespace,
            "device": self.device,
            "time": self.time,
            "property": self.property,
            "value": self.value,
            "set": self.set,
            "trigger": self.trigger,
            "message": self.message(),
        }

    def message(self) -> str:
        sets = ", ".join(f"{k} = {v}" for k, v in self.set.items())
        return f"rule {self.rule}: {self.property} is {self.value}: set {sets}"


def evaluate_rules(twin: dict[str, Any], info: DeviceInfo, changed: list[str], now: int, trigger: str = "") -> tuple[list[Firing], list[str]]:
    """Evaluate the rules whose condition reads a changed property; apply each firing's
    desired values. Returns (firings, properties whose desired value changed)."""
    firings: list[Firing] = []
    desired: list[str] = []
    if not info.rules or not changed:
        return firings, desired
    state = twin.setdefault("rules", {})
    for rule in info.rules:
        if rule.prop not in changed:
            continue
        prop = info.props.get(rule.prop)
        raw = reported_value(twin, rule.prop)
        if prop is None or raw is None:
            continue
        try:
            holds = rule.holds(prop.type, d.parse_value(prop.type, raw))
        except ValueError:
            continue
        before = state.get(rule.name)
        state[rule.name] = holds
        if not holds or before is True:
            continue  # edge-triggered: fire when the condition becomes true
        sets: dict[str, str] = {}
        for k, v in rule.set:
            target = info.props.get(k)
            if target is None or not target.writable:
                continue
            try:
                value = d.format_value(target.type, target.check(v))
            except ValueError:
                continue
            sets[k] = value
            if set_desired(twin, k, value, now, f"rule:{rule.name}") and k not in desired:
                desired.append(k)
        firings.append(Firing(uuid.uuid4().hex, rule.name, info.namespace, info.name, now, rule.prop, raw, sets, trigger))
    return firings, desired


def deltas(twin: dict[str, Any], info: DeviceInfo, names: list[str] | None = None) -> dict[str, str]:
    """Writable properties whose desired value differs from the reported one."""
    out: dict[str, str] = {}
    for name, prop in info.props.items():
        if names is not None and name not in names:
            continue
        if not prop.writable:
            continue
        want = desired_value(twin, name)
        if want is not None and want != reported_value(twin, name):
            out[name] = want
    return out


def set_state(twin: dict[str, Any], state: str, reason: str, ts: int) -> bool:
    state = state.lower()
    if ts < int(twin.get("stateTs") or 0):
        return False
    changed = twin.get("state") != state or twin.get("stateReason", "") != reason
    twin["state"] = state
    twin["stateReason"] = reason
    twin["stateTs"] = ts
    if state in ONLINE_STATES:
        twin["lastOnline"] = ts
    return changed


def parse_state(msg: dict[str, Any]) -> tuple[str, str]:
    """The state and reason of a ``state/update``; ``InvalidMessage`` if the state is not
    one KubeEdge accepts."""
    state = msg.get("state")
    if not isinstance(state, str) or state.lower() not in STATES:
        raise InvalidMessage(f"state must be one of {', '.join(STATES)} (any case), got {state!r}")
    return state, r if isinstance(r := msg.get("reason"), str) else ""


# -- the metadata mirror ------------------------------------------------------------------
def observe(cur: Seen | None, obj: dict[str, Any] | None, rev: int) -> tuple[Seen | None, bool]:
    """What a view of an object (``obj`` at ``rev``; None: deleted) does to the entry held
    (``cur``): ``(entry to hold, or None to keep cur; whether the object changed)``. An older
    view (a re-list racing a change event) is ignored; the same object only raises the
    revision."""
    if cur is not None and cur[1] > rev:
        return None, False
    if cur is not None and cur[0] == obj:
        return (obj, max(rev, cur[1])), False
    return (obj, rev), True


def vanished(table: dict[Key, Seen], seen: set[Key], rev: int) -> list[Key]:
    """Keys held as present that a listing at ``rev`` no longer has (and that no newer change
    event brought): they were deleted."""
    return [key for key, (obj, r) in table.items() if key not in seen and obj is not None and r <= rev]


def devices_of_model(devices: dict[Key, Seen], model: Key) -> list[Key]:
    """The devices (present) that use the DeviceModel ``model`` (same namespace)."""
    return [dk for dk, (dev, _) in devices.items() if dev is not None and dk[0] == model[0] and d.device_model_name(dev) == model[1]]
