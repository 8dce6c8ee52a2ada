"""What the API checks on ``Device``, ``DeviceModel`` and ``DeviceStatus`` objects. Pure.

Two kinds of checks, so that every manifest KubeEdge accepts is accepted here too:

* **errors** (``422 Invalid``) are exactly KubeEdge's: its CRD schema (types, enums,
  required fields; :mod:`edgebus.objects.device_schema`), its admission webhook (property
  names unique in a model and in a device: ``property names must be unique.``), plus the
  syntax of edgebus's own ``spec.rules``;
* **warnings** (``Warning`` headers, what ``kubectl`` prints as ``Warning: ...``) are
  edgebus's extra checks, which KubeEdge does not make: the model exists and declares each
  property, desired values parse, lie within ``minimum``/``maximum`` and target writable
  properties, Modbus visitors make sense, rules read and set existing properties, ...
"""

from __future__ import annotations

import math
from typing import Any

from edgebus.objects import device_schema
from edgebus.objects import devices as d
from edgebus.objects.checks import DNS1123_SUBDOMAIN, Causes, checks
from edgebus.objects.shapes import as_dict

UNIQUE = "property names must be unique."


# -- errors ---------------------------------------------------------------------------------


def _unique(c: Causes, items: Any, key: str, field: str) -> None:
    seen: set[str] = set()
    for i, p in enumerate(items if isinstance(items, list) else []):
        n = p.get(key) if isinstance(p, dict) else None
        if isinstance(n, str):
            if n in seen:
                c.add(f"{field}[{i}].{key}", "FieldValueDuplicate", f'Duplicate value: "{n}": {UNIQUE}')
            seen.add(n)


@checks("devicemodels")
def check_model(c: Causes, obj: dict[str, Any], version: str = "v1beta1") -> None:
    device_schema.check_kind(c, version, "DeviceModel", obj)
    spec = obj.get("spec")
    if isinstance(spec, dict):
        _unique(c, spec.get("properties"), "name", "spec.properties")


@checks("devices")
def check_device(c: Causes, obj: dict[str, Any], version: str = "v1beta1") -> None:
    device_schema.check_kind(c, version, "Device", obj)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    _unique(c, spec.get("properties"), "name", "spec.properties")
    rules = spec.get("rules")
    if isinstance(rules, list):
        names: set[str] = set()
        for i, r in enumerate(rules):
            try:
                rule = d.parse_rule(r)
            except ValueError as exc:
                c.invalid(f"spec.rules[{i}]", r.get("name") if isinstance(r, dict) else r, str(exc))
                continue
            if rule.name in names:
                c.duplicate(f"spec.rules[{i}].name", rule.name)
            names.add(rule.name)


@checks("devicestatuses")
def check_status(c: Causes, obj: dict[str, Any]) -> None:
    device_schema.check_kind(c, "v1beta1", "DeviceStatus", obj)


# -- warnings -------------------------------------------------------------------------------


def _bound(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def model_warnings(obj: dict[str, Any]) -> list[str]:
    """edgebus's extra checks of a DeviceModel (``Warning`` headers)."""
    out: list[str] = []
    spec = as_dict(obj.get("spec"))
    for i, p in enumerate(spec.get("properties") or [] if isinstance(spec.get("properties"), list) else []):
        if not isinstance(p, dict):
            continue
        f = f"spec.properties[{i}]"
        if not p.get("name"):
            out.append(f"{f}.name: a property without a name cannot be reported")
        t = p.get("type")
        if t is None:
            out.append(f"{f}.type: no type: values are carried as strings")
        elif t in d.OPAQUE_TYPES:
            out.append(f"{f}.type: {t} values are carried as opaque strings; edgebus's own mappers do not read {t} properties")
        lo, hi = p.get("minimum"), p.get("maximum")
        for key, v in (("minimum", lo), ("maximum", hi)):
            if v in (None, ""):
                continue
            if _bound(v) is None:
                out.append(f"{f}.{key}: {v!r} is not a number: not enforced")
            elif t not in d.NUMERIC:
                out.append(f"{f}.{key}: only numeric properties have a {key}: not enforced")
        if _bound(lo) is not None and _bound(hi) is not None and _bound(lo) > _bound(hi):  # type: ignore[operator]
            out.append(f"{f}.minimum: {lo} is greater than maximum {hi}: no value can be valid")
    return out


def _modbus_visitor_warnings(f: str, cfg: dict[str, Any], writable: bool) -> list[str]:
    out: list[str] = []
    v = d.modbus_visitor(cfg)
    reg = v.get("register")
    if reg is None:
        out.append(f"{f}.register: no register: edgebus's Modbus mapper cannot read this property")
    elif reg not in d.MODBUS_REGISTERS:
        out.append(f"{f}.register: {reg!r} is not one of {', '.join(d.MODBUS_REGISTERS)}")
    elif writable and reg in (d.DISCRETE_INPUT, d.INPUT):
        out.append(f"{f}.register: the property is ReadWrite but a {reg} cannot be written")
    for key, lo, hi in (("offset", 0, 65535), ("limit", 1, 125)):
        x = v.get(key)
        if x is not None and (isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi):
            out.append(f"{f}.{key}: {cfg.get(key, x)!r} is not an integer in {lo}..{hi}")
    scale = v.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale == 0):
        out.append(f"{f}.scale: {scale!r} is not a non-zero number: scale 1 is used")
    for key in ("isSwap", "isRegisterSwap"):
        if v.get(key) is not None and not isinstance(v.get(key), bool):
            out.append(f"{f}.{key}: {v.get(key)!r} is not a boolean")
    dt = v.get("dataType")
    if dt is not None and dt not in d.MODBUS_DATA_TYPES:
        out.append(f"{f}.dataType: {dt!r} is not one of {', '.join(d.MODBUS_DATA_TYPES)}")
    return out


def device_warnings(obj: dict[str, Any], model: dict[str, Any] | None, *, model_found: bool) -> list[str]:
    """edgebus's extra checks of a Device, given its model (``None``: not found)."""
    out: list[str] = []
    spec = as_dict(obj.get("spec"))
    ns = (obj.get("metadata") or {}).get("namespace") or "default"
    mname = d.device_model_name(obj)
    if mname is None:
        out.append("spec.deviceModelRef.name: no model: the device's properties have no types, devicetwin ignores them")
    elif not model_found:
        out.append(f"spec.deviceModelRef.name: DeviceModel {mname} does not exist in namespace {ns} (yet): the twins stay empty until it does")
    node = spec.get("nodeName")
    if isinstance(node, str) and node and not DNS1123_SUBDOMAIN.fullmatch(node):
        out.append(f"spec.nodeName: {node!r} is not a DNS-1123 subdomain: no edgebus node can have that name")
    proto = as_dict(spec.get("protocol"))
    protocol = proto.get("protocolName") or ""
    if "protocol" in spec and not protocol:
        out.append("spec.protocol.protocolName: no protocol name: no mapper drives this device")
    eff = d.effective_device(obj, model) if model else obj
    props = d.model_props(model) if model else {}
    for i, p in enumerate(d.device_properties(eff)):
        f = f"spec.properties[{i}]"
        mp = props.get(p["name"])
        if model is not None and mp is None:
            out.append(f"{f}.name: the model {mname} has no property {p['name']}: it is ignored")
        desired = as_dict(p.get("desired"))
        value = desired.get("value")
        if mp is not None and isinstance(value, str) and value != "":
            if not mp.writable:
                out.append(f"{f}.desired.value: property {mp.name} is ReadOnly: the desired value is never written")
            else:
                try:
                    mp.check(value)
                except ValueError as exc:
                    out.append(f"{f}.desired.value: {exc}: the desired value is not written")
        vis = as_dict(p.get("visitors"))
        cfg = as_dict(vis.get("configData"))
        vp = vis.get("protocolName") or protocol
        if vp == d.PROTOCOL_MODBUS and mp is not None:
            out.extend(_modbus_visitor_warnings(f"{f}.visitors.configData", cfg, mp.writable))
        elif vp == d.PROTOCOL_OPCUA and not isinstance(cfg.get("nodeID"), str):
            out.append(f"{f}.visitors.configData.nodeID: no nodeID: edgebus's OPC-UA mapper cannot read this property")
    for i, r in enumerate(d.device_rules(obj)):
        f = f"spec.rules[{i}]"
        if model is None:
            continue
        cond = props.get(r.prop)
        if cond is None:
            out.append(f"{f}.when: the model has no property {r.prop}: the rule never fires")
        else:
            try:
                d.parse_value(cond.type, r.literal)
            except ValueError as exc:
                out.append(f"{f}.when: {exc}: the rule never fires")
            if r.op not in ("==", "!=") and cond.type not in d.NUMERIC:
                out.append(f"{f}.when: {cond.type} properties only compare with == and !=: the rule never fires")
        for k, v in r.set:
            target = props.get(k)
            if target is None:
                out.append(f"{f}.set: the model has no property {k}: not set")
            elif not target.writable:
                out.append(f"{f}.set: property {k} is ReadOnly: not set")
            else:
                try:
                    target.check(v)
                except ValueError as exc:
                    out.append(f"{f}.set.{k}: {exc}: not set")
    return out
