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

import math
import re
from dataclasses import dataclass
from typing import Any

from edgebus.objects.validation import Causes, check_dns_subdomain

# -- property types ---------------------------------------------------------------------

INT = "INT"
FLOAT = "FLOAT"
DOUBLE = "DOUBLE"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
PROPERTY_TYPES = (INT, FLOAT, DOUBLE, STRING, BOOLEAN)
#: KubeEdge types edgebus does not serve (no mapper can carry them yet).
UNSUPPORTED_TYPES = ("BYTES", "STREAM")
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
MODBUS_DATA_TYPES = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "boolean", "string")

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
    if t == STRING:
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
            access=p.get("accessMode") if p.get("accessMode") in ACCESS_MODES else READ_WRITE,
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


# -- validation (shape; the model cross-check needs the model, see check_against_model) --


def _int_field(c: Causes, field: str, v: Any, *, minimum: int = 0) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        c.invalid(field, v, f"must be an integer >= {minimum}")


def check_model(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        c.type_error("spec", "an object", spec)
        return
    props = spec.get("properties")
    if props is None:
        props = []
    if not isinstance(props, list):
        c.type_error("spec.properties", "a list", props)
        return
    seen: set[str] = set()
    for i, p in enumerate(props):
        f = f"spec.properties[{i}]"
        if not isinstance(p, dict):
            c.type_error(f, "an object", p)
            continue
        name = p.get("name")
        if not isinstance(name, str) or not name:
            c.required(f"{f}.name")
        elif name in seen:
            c.duplicate(f"{f}.name", name)
        else:
            seen.add(name)
        t = norm_type(p.get("type"))
        if p.get("type") is None:
            c.required(f"{f}.type")
        elif t in UNSUPPORTED_TYPES:
            c.add(f"{f}.type", "FieldValueNotSupported", f"Unsupported value: \"{p.get('type')}\": edgebus does not carry {t} properties")
        elif t not in PROPERTY_TYPES:
            c.unsupported(f"{f}.type", p.get("type"), PROPERTY_TYPES)
        am = p.get("accessMode")
        if am is not None and am not in ACCESS_MODES:
            c.unsupported(f"{f}.accessMode", am, ACCESS_MODES)
        lo, hi = p.get("minimum"), p.get("maximum")
        for key, v in (("minimum", lo), ("maximum", hi)):
            if v not in (None, "") and _bound(v) is None:
                c.invalid(f"{f}.{key}", v, "must be a number")
            elif v not in (None, "") and t not in NUMERIC and t in PROPERTY_TYPES:
                c.invalid(f"{f}.{key}", v, f"only numeric properties have a {key}")
        if _bound(lo) is not None and _bound(hi) is not None and _bound(lo) > _bound(hi):  # type: ignore[operator]
            c.invalid(f"{f}.minimum", lo, "must not be greater than maximum")


def _check_modbus_visitor(c: Causes, f: str, cfg: dict[str, Any]) -> None:
    reg = cfg.get("register")
    if reg is None:
        c.required(f"{f}.register")
    elif reg not in MODBUS_REGISTERS:
        c.unsupported(f"{f}.register", reg, MODBUS_REGISTERS)
    _int_field(c, f"{f}.offset", cfg.get("offset"))
    if cfg.get("offset") is not None and isinstance(cfg.get("offset"), int) and cfg["offset"] > 65535:
        c.invalid(f"{f}.offset", cfg["offset"], "must be at most 65535")
    _int_field(c, f"{f}.limit", cfg.get("limit"), minimum=1)
    scale = cfg.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale == 0):
        c.invalid(f"{f}.scale", scale, "must be a non-zero number")
    for k in ("isSwap", "isRegisterSwap"):
        if cfg.get(k) is not None and not isinstance(cfg.get(k), bool):
            c.type_error(f"{f}.{k}", "a boolean", cfg.get(k))
    dt = cfg.get("dataType")
    if dt is not None and dt not in MODBUS_DATA_TYPES:
        c.unsupported(f"{f}.dataType", dt, MODBUS_DATA_TYPES)


def check_device(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        c.required("spec")
        return
    ref = spec.get("deviceModelRef")
    if not isinstance(ref, dict):
        c.required("spec.deviceModelRef.name")
    else:
        check_dns_subdomain(c, "spec.deviceModelRef.name", ref.get("name"))
    if spec.get("nodeName") not in (None, ""):
        check_dns_subdomain(c, "spec.nodeName", spec.get("nodeName"))
    proto = spec.get("protocol")
    protocol = ""
    if proto is not None:
        if not isinstance(proto, dict):
            c.type_error("spec.protocol", "an object", proto)
        else:
            protocol = proto.get("protocolName") or ""
            if not isinstance(protocol, str) or not protocol:
                c.required("spec.protocol.protocolName")
            if proto.get("configData") is not None and not isinstance(proto.get("configData"), dict):
                c.type_error("spec.protocol.configData", "an object", proto.get("configData"))
    props = spec.get("properties")
    if props is not None and not isinstance(props, list):
        c.type_error("spec.properties", "a list", props)
        props = []
    seen: set[str] = set()
    for i, p in enumerate(props or []):
        f = f"spec.properties[{i}]"
        if not isinstance(p, dict):
            c.type_error(f, "an object", p)
            continue
        name = p.get("name")
        if not isinstance(name, str) or not name:
            c.required(f"{f}.name")
        elif name in seen:
            c.duplicate(f"{f}.name", name)
        else:
            seen.add(name)
        d = p.get("desired")
        if d is not None:
            if not isinstance(d, dict):
                c.type_error(f"{f}.desired", "an object", d)
            elif isinstance(d.get("value"), (dict, list)):
                c.type_error(f"{f}.desired.value", "a string", d.get("value"))
        for k in ("reportCycle", "collectCycle"):
            _int_field(c, f"{f}.{k}", p.get(k))
        v = p.get("visitors")
        if v is None:
            continue
        if not isinstance(v, dict):
            c.type_error(f"{f}.visitors", "an object", v)
            continue
        cfg = v.get("configData")
        if cfg is not None and not isinstance(cfg, dict):
            c.type_error(f"{f}.visitors.configData", "an object", cfg)
            continue
        vp = v.get("protocolName") or protocol
        if vp == PROTOCOL_MODBUS:
            _check_modbus_visitor(c, f"{f}.visitors.configData", cfg or {})
        elif vp == PROTOCOL_OPCUA and not isinstance((cfg or {}).get("nodeID"), str):
            c.required(f"{f}.visitors.configData.nodeID")
    rules = spec.get("rules")
    if rules is not None:
        if not isinstance(rules, list):
            c.type_error("spec.rules", "a list", rules)
        else:
            names: set[str] = set()
            for i, r in enumerate(rules):
                try:
                    rule = parse_rule(r)
                except ValueError as exc:
                    c.invalid(f"spec.rules[{i}]", r.get("name") if isinstance(r, dict) else r, str(exc))
                    continue
                if rule.name in names:
                    c.duplicate(f"spec.rules[{i}].name", rule.name)
                names.add(rule.name)


def check_against_model(device: dict[str, Any], model: dict[str, Any]) -> Causes:
    """What is wrong with ``device`` given its ``model``: unknown properties, desired values
    that do not parse, are out of range or target a read-only property, rules that name
    unknown properties or set read-only ones, writable properties on read-only registers."""
    c = Causes()
    props = model_props(model)
    for i, p in enumerate(device_properties(device)):
        f = f"spec.properties[{i}]"
        mp = props.get(p["name"])
        if mp is None:
            c.invalid(f"{f}.name", p["name"], f"the model {device_model_name(device)} has no such property")
            continue
        d = p.get("desired")
        if isinstance(d, dict) and d.get("value") not in (None, ""):
            if not mp.writable:
                c.invalid(f"{f}.desired.value", d["value"], f"property {mp.name} is {READ_ONLY}")
            else:
                try:
                    mp.check(d["value"])
                except ValueError as exc:
                    c.invalid(f"{f}.desired.value", d["value"], str(exc))
        cfg = ((p.get("visitors") or {}).get("configData") or {}) if isinstance(p.get("visitors"), dict) else {}
        if mp.writable and isinstance(cfg, dict) and cfg.get("register") in (DISCRETE_INPUT, INPUT):
            c.invalid(f"{f}.visitors.configData.register", cfg.get("register"), f"property {mp.name} is {READ_WRITE} but this register cannot be written")
    for i, r in enumerate(device_rules(device)):
        f = f"spec.rules[{i}]"
        cond = props.get(r.prop)
        if cond is None:
            c.invalid(f"{f}.when", r.prop, "no such property in the model")
        else:
            try:
                parse_value(cond.type, r.literal)
            except ValueError as exc:
                c.invalid(f"{f}.when", r.literal, str(exc))
            if r.op not in ("==", "!=") and cond.type not in NUMERIC:
                c.invalid(f"{f}.when", r.op, f"{cond.type} properties only compare with == and !=")
        for k, v in r.set:
            target = props.get(k)
            if target is None:
                c.invalid(f"{f}.set", k, "no such property in the model")
            elif not target.writable:
                c.invalid(f"{f}.set", k, f"property {k} is {READ_ONLY}")
            else:
                try:
                    target.check(v)
                except ValueError as exc:
                    c.invalid(f"{f}.set.{k}", v, str(exc))
    return c
