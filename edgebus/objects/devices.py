"""Devices and device models (``devices.kubeedge.io/v1beta1``): typed values, validation,
and local rules. Pure: no I/O.

A ``DeviceModel`` declares properties (``type``, ``accessMode``, ``minimum``, ``maximum``,
``unit``); a ``Device`` references a model (same namespace), is bound to a node, names its
protocol, and gives per property a desired value and the *visitor* that tells a mapper where
the value lives on the device. Values travel as strings, as in KubeEdge; :func:`parse_value`
and :func:`format_value` convert between the string and the typed value of a property.

Rules (an edgebus extension under ``spec.rules``) run on the edge::

    rules:
      - name: fan-on
        when: "temperature > 30"
        set: {fan: "1"}

``when`` is ``<property> <op> <literal>`` with ``op`` one of ``> >= < <= == !=``; a rule
fires when its condition *becomes* true (edge-triggered), and sets the desired value of
each property in ``set``.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any
from edgebus.objects.shapes import as_dict


# -- property types ---------------------------------------------------------------------

INT = "INT"
FLOAT = "FLOAT"
DOUBLE = "DOUBLE"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
BYTES = "BYTES"
STREAM = "STREAM"
PROPERTY_TYPES = (INT, FLOAT, DOUBLE, STRING, BOOLEAN, BYTES, STREAM)
#: Types whose values edgebus carries as opaque strings (its own mappers read none of them).
OPAQUE_TYPES = (BYTES, STREAM)
NUMERIC = (INT, FLOAT, DOUBLE)

READ_WRITE = "ReadWrite"
READ_ONLY = "ReadOnly"
ACCESS_MODES = (READ_WRITE, READ_ONLY)

#: Modbus register kinds (visitor ``configData.register``).
COIL = "CoilRegister"
DISCRETE_INPUT = "DiscreteInputRegister"
HOLDING = "HoldingRegister"
INPUT = "InputRegister"
MODBUS_REGISTERS = (COIL, DISCRETE_INPUT, HOLDING, INPUT)
WRITABLE_REGISTERS = (COIL, HOLDING)
#: KubeEdge's visitor data types (mappers-go / mapper-framework, case-insensitive there too)
KUBEEDGE_DATA_TYPES = ("int", "float", "double", "boolean", "string", "bytes")
#: edgebus's explicit widths (an extension: signed/unsigned integers, IEEE floats)
EXPLICIT_DATA_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
MODBUS_DATA_TYPES = KUBEEDGE_DATA_TYPES + EXPLICIT_DATA_TYPES
#: canonical spelling of Modbus visitor keys (KubeEdge's e2e fixtures capitalise them)
MODBUS_VISITOR_KEYS = ("register", "offset", "limit", "scale", "isSwap", "isRegisterSwap", "dataType")

PROTOCOL_MODBUS = "modbus"
PROTOCOL_OPCUA = "opcua"

_TRUE = ("true", "1", "on", "yes")
_FALSE = ("false", "0", "off", "no")


def norm_type(t: Any) -> str:
    return t.upper() if isinstance(t, str) else ""


def parse_value(ptype: str, raw: Any) -> int | float | str | bool:
    """The typed value of ``raw`` (a string, or a JSON scalar) for a property of ``ptype``.

    Raises ValueError with a readable reason when ``raw`` is not a value of that type."""
    t = norm_type(ptype)
    if raw is None or isinstance(raw, (dict, list, tuple)):
        raise ValueError(f"must be a {t.lower()} scalar, got {type(raw).__name__ if raw is not None else 'null'}")
    if t in (STRING, BYTES, STREAM):
        if isinstance(raw, bool):
            return "true" if raw else "false"
        return str(raw)
    if t == BOOLEAN:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, (int, float)) and raw in (0, 1):
            return bool(raw)
        s = str(raw).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ValueError(f"{raw!r} is not a boolean (true/false/1/0)")
    if t == INT:
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not an integer")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float):
            if raw.is_integer():
                return int(raw)
            raise ValueError(f"{raw!r} is not an integer")
        s = str(raw).strip()
        try:
            return int(s, 10)
        except ValueError:
            pass
        try:
            f = float(s)
        except ValueError:
            raise ValueError(f"{raw!r} is not an integer") from None
        if math.isfinite(f) and f.is_integer():
            return int(f)
        raise ValueError(f"{raw!r} is not an integer")
    if t in (FLOAT, DOUBLE):
        if isinstance(raw, bool):
            raise ValueError(f"{raw!r} is not a number")
        try:
            f = float(raw) if isinstance(raw, (int, float)) else float(str(raw).strip())
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        if not math.isfinite(f):
            raise ValueError(f"{raw!r} is not a finite number")
        return f
    raise ValueError(f"unsupported property type {ptype!r}")


def format_value(ptype: str, v: Any) -> str:
    """The canonical string of a typed value (what twins carry)."""
    t = norm_type(ptype)
    if t == BOOLEAN:
        return "true" if v else "false"
    if t == INT:
        return str(int(v))
    if t in (FLOAT, DOUBLE):
        f = float(v)
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)
    return str(v)


def canonical(ptype: str, raw: Any) -> str:
    """Parse then format: two spellings of one value ("1.0", 1) compare equal."""
    return format_value(ptype, parse_value(ptype, raw))


@dataclass(frozen=True, slots=True)
class Prop:
    """A model property, normalized."""

    name: str
    type: str
    access: str
    minimum: float | None
    maximum: float | None
    unit: str = ""

    @property
    def writable(self) -> bool:
        return self.access == READ_WRITE

    def check(self, raw: Any) -> int | float | str | bool:
        """Parse ``raw`` and check it is within ``minimum`` / ``maximum``."""
        v = parse_value(self.type, raw)
        if self.type in NUMERIC and not isinstance(v, bool):
            if self.minimum is not None and v < self.minimum:  # type: ignore[operator]
                raise ValueError(f"{format_value(self.type, v)} is below the minimum {format_value(FLOAT, self.minimum)}")
            if self.maximum is not None and v > self.maximum:  # type: ignore[operator]
                raise ValueError(f"{format_value(self.type, v)} is above the maximum {format_value(FLOAT, self.maximum)}")
        return v


def _bound(v: Any) -> float | None:
    if v in (None, ""):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def model_props(model: dict[str, Any] | None) -> dict[str, Prop]:
    """The properties of a DeviceModel object, by name (invalid entries are skipped)."""
    out: dict[str, Prop] = {}
    spec = (model or {}).get("spec") or {}
    for p in spec.get("properties") or [] if isinstance(spec, dict) else []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        t = norm_type(p.get("type"))
        if t not in PROPERTY_TYPES:
            continue
        out[p["name"]] = Prop(
            name=p["name"],
            type=t,
            access=str(p["accessMode"]) if p.get("accessMode") in ACCESS_MODES else READ_WRITE,
            minimum=_bound(p.get("minimum")),
            maximum=_bound(p.get("maximum")),
            unit=str(p.get("unit") or ""),
        )
    return out


def device_model_name(device: dict[str, Any]) -> str | None:
    spec = device.get("spec") or {}
    ref = spec.get("deviceModelRef") if isinstance(spec, dict) else None
    n = ref.get("name") if isinstance(ref, dict) else None
    return n if isinstance(n, str) and n else None


def device_node(device: dict[str, Any]) -> str | None:
    spec = device.get("spec") or {}
    n = spec.get("nodeName") if isinstance(spec, dict) else None
    return n if isinstance(n, str) and n else None


def device_protocol(device: dict[str, Any]) -> str:
    spec = device.get("spec") or {}
    p = (spec.get("protocol") or {}) if isinstance(spec, dict) else {}
    return str(p.get("protocolName") or "") if isinstance(p, dict) else ""


def device_properties(device: dict[str, Any]) -> list[dict[str, Any]]:
    spec = device.get("spec") or {}
    props = spec.get("properties") if isinstance(spec, dict) else None
    return [p for p in props or [] if isinstance(p, dict) and isinstance(p.get("name"), str)]


def desired_values(device: dict[str, Any]) -> dict[str, str]:
    """``{property: desired value as given}`` for properties that declare one."""
    out: dict[str, str] = {}
    for p in device_properties(device):
        d = p.get("desired")
        if isinstance(d, dict) and d.get("value") not in (None, ""):
            v = d["value"]
            out[p["name"]] = v if isinstance(v, str) else format_value(BOOLEAN if isinstance(v, bool) else (INT if isinstance(v, int) else FLOAT), v)
    return out


# -- rules ------------------------------------------------------------------------------

OPERATORS = (">=", "<=", "==", "!=", ">", "<")
_WHEN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(>=|<=|==|!=|>|<)\s*([^<>=!\s].*?)\s*$")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    prop: str
    op: str
    literal: str
    set: tuple[tuple[str, str], ...]

    def holds(self, ptype: str, value: Any) -> bool:
        """Whether the condition holds for ``value`` (a typed value of the property)."""
        try:
            lit = parse_value(ptype, self.literal)
        except ValueError:
            return False
        if self.op == "==":
            return bool(value == lit)
        if self.op == "!=":
            return bool(value != lit)
        if isinstance(value, str) or isinstance(lit, str):
            return False
        a, b = float(value), float(lit)
        return {">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[self.op]

    def describe(self) -> str:
        sets = ", ".join(f"{k} = {v}" for k, v in self.set)
        return f"when {self.prop} {self.op} {self.literal} set {sets}"


def parse_rule(raw: Any) -> Rule:
    """A rule from its spec entry; ValueError on a malformed one."""
    if not isinstance(raw, dict):
        raise ValueError("a rule must be an object with name, when and set")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("a rule needs a name")
    when = raw.get("when")
    m = _WHEN.fullmatch(when) if isinstance(when, str) else None
    if m is None:
        raise ValueError(f"when must read '<property> <op> <value>' with op one of {' '.join(OPERATORS)}")
    lit = m.group(3).strip()
    if len(lit) >= 2 and lit[0] == lit[-1] and lit[0] in "\"'":
        lit = lit[1:-1]
    sets = raw.get("set")
    if not isinstance(sets, dict) or not sets:
        raise ValueError("set must map at least one property to a value")
    pairs = []
    for k, v in sets.items():
        if not isinstance(k, str) or v is None or isinstance(v, (dict, list)):
            raise ValueError("set must map property names to scalar values")
        pairs.append((k, v if isinstance(v, str) else format_value(BOOLEAN if isinstance(v, bool) else (INT if isinstance(v, int) else FLOAT), v)))
    return Rule(name, m.group(1), m.group(2), lit, tuple(pairs))


def device_rules(device: dict[str, Any]) -> list[Rule]:
    """The device's valid rules (invalid ones are rejected by the API, skipped here)."""
    spec = device.get("spec") or {}
    out = []
    for r in (spec.get("rules") or []) if isinstance(spec, dict) else []:
        try:
            out.append(parse_rule(r))
        except ValueError:
            continue
    return out




# -- visitors and the model's defaults -------------------------------------------------


def coerce_scalar(v: Any) -> Any:
    """A configData scalar as a mapper reads it: numeric and boolean strings as values
    (KubeEdge's fixtures write ``offset: "2"``, ``isSwap: "true"``)."""
    if not isinstance(v, str):
        return v
    t = v.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t, 10)
    except ValueError:
        pass
    try:
        f = float(t)
    except ValueError:
        return v
    return f if math.isfinite(f) else v


def modbus_visitor(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """A Modbus visitor's ``configData`` with canonical keys (any case: ``Register``,
    ``register``) and typed values (``"2"`` -> 2, ``"true"`` -> True); ``dataType`` lower-cased.
    Unknown keys are kept as they are."""
    canon = {k.lower(): k for k in MODBUS_VISITOR_KEYS}
    out: dict[str, Any] = {}
    for k, v in (cfg or {}).items():
        key = canon.get(str(k).lower(), k)
        if key in MODBUS_VISITOR_KEYS and key not in ("register", "dataType"):
            v = coerce_scalar(v)
        elif key == "dataType" and isinstance(v, str):
            v = v.lower()
        if key in out and key != k:
            continue  # the canonical spelling wins over another one
        out[key] = v
    return out


def effective_device(device: dict[str, Any], model: dict[str, Any] | None) -> dict[str, Any]:
    """The device with its model's defaults applied, as KubeEdge's edge hands it to a mapper:
    a model property's ``visitors`` (and its ``configData`` keys) and the model's
    ``protocolConfigData`` apply unless the device sets them."""

    out = copy.deepcopy(device)
    mspec = (model or {}).get("spec") if isinstance((model or {}).get("spec"), dict) else {}
    spec = out.get("spec") if isinstance(out.get("spec"), dict) else None
    if not mspec or spec is None:
        return out
    mvis = {p["name"]: p.get("visitors") for p in mspec.get("properties") or [] if isinstance(p, dict) and isinstance(p.get("visitors"), dict)}
    for p in device_properties(out):
        mv = mvis.get(p["name"])
        if not mv:
            continue
        dv = as_dict(p.get("visitors"))
        merged = {**copy.deepcopy(mv), **{k: v for k, v in dv.items() if k != "configData"}}
        cfg = {**(mv.get("configData") or {}), **(dv.get("configData") or {})} if isinstance(mv.get("configData"), dict) or isinstance(dv.get("configData"), dict) else None
        if cfg is not None:
            merged["configData"] = cfg
        p["visitors"] = merged
    pcd = mspec.get("protocolConfigData")
    if isinstance(pcd, dict) and pcd:
        proto = spec.setdefault("protocol", {}) if isinstance(spec.get("protocol"), dict) or spec.get("protocol") is None else None
        if proto is not None:
            proto["configData"] = {**copy.deepcopy(pcd), **(proto.get("configData") or {})}
    return out
