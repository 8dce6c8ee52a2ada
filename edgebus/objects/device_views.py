"""Views of the stored devices: ``devices.kubeedge.io/v1alpha2`` (Device and DeviceModel)
and ``DeviceStatus`` (v1beta1, KubeEdge 1.23), each converted to and from the storage
version (v1beta1 Device / DeviceModel). Pure.

* **v1alpha2 <-> v1beta1.** KubeEdge's v1alpha2 Device names its protocol by key
  (``protocol.modbus`` + ``protocol.common.tcp``/``com``, ``opcua``, ``bluetooth``,
  ``customizedProtocol``), its visitors per protocol (``propertyVisitors[].modbus`` ...),
  its node by a ``nodeSelector`` and keeps desired values in ``status.twins[].desired``;
  v1beta1 has ``protocol.protocolName`` + ``configData``, ``properties[].visitors``,
  ``nodeName`` and ``properties[].desired``. A v1alpha2 model types each property by key
  (``type: {int: {accessMode, minimum, maximum, unit, defaultValue}}``) where v1beta1 has
  ``type: INT`` and string bounds. A v1alpha2 write also keeps its spec as written (and
  its twins' order) in the annotation ``STASH``, with the v1beta1 spec it became: while the
  stored spec is that one, v1alpha2 readers get exactly what was written (``spec.data``, a
  node selector that is not one node, ``defaultValue`` ... included); once the spec was
  changed through v1beta1, the v1alpha2 view is converted from what is stored. A v1alpha2
  write keeps what only v1beta1 has (push methods, methods, rules, ...) of the stored object.
* **DeviceStatus** is the status of the Device of the same name, shown as its own object
  (``ownerReferences`` the Device): ``status.twins`` (reported and observed desired values),
  ``state``, ``lastOnlineTime``, ``extensions`` (the rest edgebus keeps: ``stateReason``,
  ``stateTimestamp``). The Device's status is authoritative; writing a DeviceStatus writes
  the Device's status (its own labels and annotations go to ``status.deviceStatusMetadata``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgebus.objects.resources import DEVICEMODELS, DEVICES, DEVICES_GROUP, Resource
from edgebus.objects.shapes import as_dict

STASH = "devices.edgebus.io/v1alpha2"
V1ALPHA2 = "v1alpha2"

DEVICES_V1ALPHA2 = Resource("devices", "Device", group=DEVICES_GROUP, version=V1ALPHA2, singular="device")
DEVICEMODELS_V1ALPHA2 = Resource("devicemodels", "DeviceModel", group=DEVICES_GROUP, version=V1ALPHA2, singular="devicemodel")
DEVICESTATUSES = Resource("devicestatuses", "DeviceStatus", group=DEVICES_GROUP, version="v1beta1", singular="devicestatus")

_MODBUS_VISITOR = ("register", "offset", "limit", "scale", "isSwap", "isRegisterSwap")
_OPCUA_VISITOR = ("nodeID", "browseName")
_BLUETOOTH_VISITOR = ("characteristicUUID", "dataWrite", "dataConverter")
_OPCUA_PROTOCOL = ("url", "userName", "password", "securityPolicy", "securityMode", "certificate", "privateKey", "timeout")
_COM = ("serialPort", "baudRate", "dataBits", "parity", "stopBits")
_TCP = ("ip", "port")
_COMMON = ("commType", "reconnTimeout", "reconnRetryTimes", "collectTimeout", "collectRetryTimes", "collectType")


def _md(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata")
    return as_dict(md)


def _stash_get(obj: dict[str, Any]) -> dict[str, Any]:
    raw = (_md(obj).get("annotations") or {}).get(STASH)
    try:
        v = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        v = {}
    return as_dict(v)


def _stash_put(obj: dict[str, Any], stash: dict[str, Any]) -> None:
    md = obj.setdefault("metadata", {})
    ann = dict(md.get("annotations") or {})
    if stash:
        ann[STASH] = json.dumps(stash, sort_keys=True, separators=(",", ":"))
    else:
        ann.pop(STASH, None)
    if ann:
        md["annotations"] = ann
    else:
        md.pop("annotations", None)


def _fp(x: Any) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"), default=str)


def _remember(out: dict[str, Any], view_spec: Any, extra: dict[str, Any] | None = None) -> None:
    """Keep the v1alpha2 spec as written, with the v1beta1 spec it became: a reader gets it
    back as long as the stored spec is still that one (changed through v1beta1, the v1alpha2
    view is converted from what is stored)."""
    _stash_put(out, {"spec": view_spec, "of": _fp(out.get("spec")), **(extra or {})})


def _recall(obj: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    stash = _stash_get(obj)
    if stash.get("of") == _fp(obj.get("spec")) and "spec" in stash:
        return copy.deepcopy(stash["spec"]), stash
    return None, stash


def _meta_out(obj: dict[str, Any]) -> dict[str, Any]:
    md = copy.deepcopy(_md(obj))
    ann = {k: v for k, v in (md.get("annotations") or {}).items() if k != STASH}
    if ann:
        md["annotations"] = ann
    else:
        md.pop("annotations", None)
    return md


def _bound_str(v: Any) -> Any:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return str(v)
    return v


def _bound_num(v: Any, integer: bool) -> Any:
    if not isinstance(v, str):
        return v
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if integer and f.is_integer() else f


# -- DeviceModel ------------------------------------------------------------------------------


def model_to_storage(view: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in view.items() if k not in ("spec", "apiVersion")}
    out["apiVersion"] = DEVICEMODELS.api_version
    spec = as_dict(view.get("spec"))
    old = {p.get("name"): p for p in ((current or {}).get("spec") or {}).get("properties") or [] if isinstance(p, dict)}
    props = []
    for p in spec.get("properties") or []:
        if not isinstance(p, dict):
            continue
        q = {k: v for k, v in (old.get(p.get("name")) or {}).items() if k == "visitors"}  # only v1beta1 has model visitors
        for k in ("name", "description"):
            if k in p:
                q[k] = p[k]
        types = as_dict(p.get("type"))
        for t, cfg in types.items():
            cfg = as_dict(cfg)
            q["type"] = str(t).upper()
            for k in ("accessMode", "unit"):
                if k in cfg:
                    q[k] = cfg[k]
            for k in ("minimum", "maximum"):
                if k in cfg:
                    q[k] = _bound_str(cfg[k])
            break
        props.append(q)
    new_spec: dict[str, Any] = {k: copy.deepcopy(v) for k, v in ((current or {}).get("spec") or {}).items() if k == "protocolConfigData"}
    if "properties" in spec:
        new_spec["properties"] = props
    if "protocol" in spec:
        new_spec["protocol"] = spec["protocol"]
    out["spec"] = new_spec
    _remember(out, spec)
    return out


def model_from_storage(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "metadata", "apiVersion")}
    out["apiVersion"] = DEVICEMODELS_V1ALPHA2.api_version
    out["metadata"] = _meta_out(obj)
    as_written, _ = _recall(obj)
    if as_written is not None:
        out["spec"] = as_written
        return out
    spec = as_dict(obj.get("spec"))
    props = []
    for p in spec.get("properties") or []:
        if not isinstance(p, dict):
            continue
        t = str(p.get("type") or "STRING").lower()
        t = "bytes" if t == "stream" else t
        cfg: dict[str, Any] = {k: p[k] for k in ("accessMode",) if k in p}
        if t in ("int", "float", "double"):
            for k in ("minimum", "maximum"):
                if p.get(k) not in (None, ""):
                    cfg[k] = _bound_num(p[k], t == "int")
            if "unit" in p:
                cfg["unit"] = p["unit"]
        q = {k: p[k] for k in ("name", "description") if k in p}
        q["type"] = {t: cfg}
        props.append(q)
    new_spec: dict[str, Any] = {}
    if "properties" in spec:
        new_spec["properties"] = props
    if "protocol" in spec:
        new_spec["protocol"] = spec["protocol"]
    out["spec"] = new_spec
    return out


# -- Device -----------------------------------------------------------------------------------


def _protocol_to_storage(p: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    name = ""
    common = as_dict(p.get("common"))
    for k in _COMMON:
        if k in common:
            cfg[k] = common[k]
    for part in ("tcp", "com"):
        if isinstance(common.get(part), dict):
            cfg.update(common[part])
    if isinstance(common.get("customizedValues"), dict):
        cfg.update(common["customizedValues"])
    if isinstance(p.get("modbus"), dict):
        name = "modbus"
        cfg.update(p["modbus"])
    elif isinstance(p.get("opcua"), dict):
        name = "opcua"
        cfg.update(p["opcua"])
    elif isinstance(p.get("bluetooth"), dict):
        name = "bluetooth"
        cfg.update(p["bluetooth"])
    cp = p.get("customizedProtocol")
    if isinstance(cp, dict):
        name = cp.get("protocolName") or name
        if isinstance(cp.get("configData"), dict):
            cfg.update(cp["configData"])
    out: dict[str, Any] = {}
    if name:
        out["protocolName"] = name
    if cfg:
        out["configData"] = cfg
    return out


def _protocol_from_storage(p: dict[str, Any]) -> dict[str, Any]:
    name = p.get("protocolName") or ""
    cfg = dict(p.get("configData") or {}) if isinstance(p.get("configData"), dict) else {}
    if name not in ("modbus", "opcua", "bluetooth"):
        if not name and not cfg:
            return {}
        return {"customizedProtocol": {k: v for k, v in (("protocolName", name), ("configData", cfg)) if v}}
    out: dict[str, Any] = {}
    own = {"modbus": ("slaveID",), "opcua": _OPCUA_PROTOCOL, "bluetooth": ("macAddress",)}[name]
    out[name] = {k: cfg.pop(k) for k in own if k in cfg}
    common: dict[str, Any] = {}
    for part, keys in (("tcp", _TCP), ("com", _COM)):
        sub = {k: cfg.pop(k) for k in keys if k in cfg}
        if sub:
            common[part] = sub
    for k in _COMMON:
        if k in cfg:
            common[k] = cfg.pop(k)
    if cfg:
        common["customizedValues"] = cfg
    if common:
        out["common"] = common
    return out


def _visitor_to_storage(v: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    name = ""
    for proto in ("modbus", "opcua", "bluetooth"):
        if isinstance(v.get(proto), dict):
            name = proto
            cfg.update(v[proto])
    cp = v.get("customizedProtocol")
    if isinstance(cp, dict):
        name = cp.get("protocolName") or name
        cfg.update(cp.get("configData") or {})
    if isinstance(v.get("customizedValues"), dict):
        cfg.update(v["customizedValues"])
    out: dict[str, Any] = {}
    if name:
        out["protocolName"] = name
    out["configData"] = cfg
    return out


def _visitor_from_storage(vis: dict[str, Any]) -> dict[str, Any]:
    name = vis.get("protocolName") or ""
    cfg = dict(vis.get("configData") or {}) if isinstance(vis.get("configData"), dict) else {}
    own = {"modbus": _MODBUS_VISITOR, "opcua": _OPCUA_VISITOR, "bluetooth": _BLUETOOTH_VISITOR}.get(name)
    if own is None:
        return {"customizedProtocol": {"protocolName": name, "configData": cfg}} if name or cfg else {}
    out: dict[str, Any] = {name: {k: cfg.pop(k) for k in own if k in cfg}}
    if cfg:
        out["customizedValues"] = cfg
    return out


def _single_node(sel: Any) -> str | None:
    """The node of a selector that names exactly one (KubeEdge's ``key: ''``, ``In``, one value)."""
    try:
        (term,) = sel["nodeSelectorTerms"]
        (expr,) = term["matchExpressions"]
        (node,) = expr["values"]
    except (KeyError, TypeError, ValueError):
        return None
    if set(term) != {"matchExpressions"} or expr.get("key") != "" or expr.get("operator") != "In" or set(expr) != {"key", "operator", "values"}:
        return None
    return node if isinstance(node, str) else None


def device_to_storage(view: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in view.items() if k not in ("spec", "status", "apiVersion")}
    out["apiVersion"] = DEVICES.api_version
    spec = as_dict(view.get("spec"))
    cur_spec = as_dict((current or {}).get("spec"))
    new: dict[str, Any] = {k: copy.deepcopy(v) for k, v in cur_spec.items() if k in ("methods", "stateReport", "rules")}
    if "deviceModelRef" in spec:
        new["deviceModelRef"] = copy.deepcopy(spec["deviceModelRef"])
    if "nodeSelector" in spec:
        node = _single_node(spec["nodeSelector"])
        if node is not None:
            new["nodeName"] = node
    if isinstance(spec.get("protocol"), dict):
        new["protocol"] = _protocol_to_storage(spec["protocol"])
    old = {p.get("name"): p for p in cur_spec.get("properties") or [] if isinstance(p, dict)}
    props: dict[str, dict[str, Any]] = {}
    for v in spec.get("propertyVisitors") or []:
        if not isinstance(v, dict) or not isinstance(v.get("propertyName"), str):
            continue
        name = v["propertyName"]
        p = {k: copy.deepcopy(x) for k, x in (old.get(name) or {}).items() if k in ("pushMethod", "reportToCloud")}
        p["name"] = name
        for k in ("reportCycle", "collectCycle"):
            if k in v:
                p[k] = v[k]
        p["visitors"] = _visitor_to_storage(v)
        props[name] = p
    status = as_dict(view.get("status"))
    twins_out = []
    for t in status.get("twins") or []:
        if not isinstance(t, dict) or not isinstance(t.get("propertyName"), str):
            continue
        name = t["propertyName"]
        if isinstance(t.get("desired"), dict):
            props.setdefault(name, {"name": name})["desired"] = copy.deepcopy(t["desired"])
        if isinstance(t.get("reported"), dict):
            twins_out.append({"propertyName": name, "reported": copy.deepcopy(t["reported"])})
    if "propertyVisitors" in spec or props:
        new["properties"] = list(props.values())
    out["spec"] = new
    if twins_out:
        out["status"] = {"twins": twins_out}
    elif current is not None and "status" in current:
        out["status"] = copy.deepcopy(current["status"])
    order = [t["propertyName"] for t in status.get("twins") or [] if isinstance(t, dict) and isinstance(t.get("propertyName"), str)]
    _remember(out, spec, {"twins": order} if "twins" in status else {})
    return out


def device_from_storage(obj: dict[str, Any]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("spec", "status", "metadata", "apiVersion")}
    out["apiVersion"] = DEVICES_V1ALPHA2.api_version
    out["metadata"] = _meta_out(obj)
    as_written, stash = _recall(obj)
    spec = as_dict(obj.get("spec"))
    new: dict[str, Any] = {}
    if "deviceModelRef" in spec:
        new["deviceModelRef"] = copy.deepcopy(spec["deviceModelRef"])
    if isinstance(spec.get("protocol"), dict):
        proto = _protocol_from_storage(spec["protocol"])
        if proto:
            new["protocol"] = proto
    if isinstance(spec.get("nodeName"), str) and spec["nodeName"]:
        new["nodeSelector"] = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "", "operator": "In", "values": [spec["nodeName"]]}]}]}
    visitors, desired = [], {}
    for p in spec.get("properties") or []:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        if isinstance(p.get("desired"), dict):
            desired[p["name"]] = p["desired"]
        vis = p.get("visitors") if isinstance(p.get("visitors"), dict) else None
        if vis is None and "reportCycle" not in p and "collectCycle" not in p:
            continue
        v: dict[str, Any] = {"propertyName": p["name"]}
        for k in ("reportCycle", "collectCycle"):
            if k in p:
                v[k] = p[k]
        v.update(_visitor_from_storage(vis or {}))
        visitors.append(v)
    if visitors or "properties" in spec:
        new["propertyVisitors"] = visitors
    out["spec"] = as_written if as_written is not None else new
    reported = {
        t["propertyName"]: t["reported"]
        for t in (((obj.get("status") or {}).get("twins") or []) if isinstance(obj.get("status"), dict) else [])
        if isinstance(t, dict) and isinstance(t.get("propertyName"), str) and isinstance(t.get("reported"), dict)
    }
    order = list(stash.get("twins") or []) if as_written is not None else []
    order += [n for n in dict.fromkeys([*reported, *desired]) if n not in order]
    twins = []
    for n in order:
        entry: dict[str, Any] = {"propertyName": n}
        if n in desired:
            entry["desired"] = copy.deepcopy(desired[n])
        if n in reported:
            entry["reported"] = copy.deepcopy(reported[n])
        twins.append(entry)
    if twins:
        out["status"] = {"twins": twins}
    return out


# -- DeviceStatus -----------------------------------------------------------------------------

_STATUS_EXTENSIONS = ("stateReason", "stateTimestamp")
#: the DeviceStatus's own labels and annotations (kubectl apply's last-applied), kept in the Device's status
OWN_META = "deviceStatusMetadata"


def status_from_storage(device: dict[str, Any]) -> dict[str, Any]:
    md = _md(device)
    st = as_dict(device.get("status"))
    status: dict[str, Any] = {}
    if st.get("twins"):
        status["twins"] = copy.deepcopy(st["twins"])
    for k in ("state", "lastOnlineTime"):
        if st.get(k):
            status[k] = st[k]
    ext = copy.deepcopy(as_dict(st.get("extensions")))
    ext.update({k: st[k] for k in _STATUS_EXTENSIONS if st.get(k)})
    if ext:
        status["extensions"] = ext
    meta: dict[str, Any] = {k: md[k] for k in ("name", "namespace", "resourceVersion", "creationTimestamp", "uid") if k in md}
    meta["ownerReferences"] = [{"apiVersion": DEVICES.api_version, "kind": DEVICES.kind, "name": md.get("name", ""), "uid": md.get("uid", ""), "controller": True}]
    own = as_dict(st.get(OWN_META))
    for k in ("labels", "annotations"):
        if own.get(k):
            meta[k] = copy.deepcopy(own[k])
    return {"apiVersion": DEVICESTATUSES.api_version, "kind": DEVICESTATUSES.kind, "metadata": meta, "spec": {}, "status": status}


def status_to_storage(view: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """The Device (``current``) with the status a DeviceStatus write gives it."""
    out = copy.deepcopy(current or {})
    st = as_dict(view.get("status"))
    new = {k: copy.deepcopy(v) for k, v in ((current or {}).get("status") or {}).items() if k in ("reportCycle", "reportToCloud")}
    for k in ("twins", "state", "lastOnlineTime"):
        if k in st:
            new[k] = copy.deepcopy(st[k])
    ext = dict(st.get("extensions") or {})
    for k in _STATUS_EXTENSIONS:
        if k in ext:
            new[k] = ext.pop(k)
    if ext:
        new["extensions"] = ext
    own = {k: copy.deepcopy(_md(view)[k]) for k in ("labels", "annotations") if _md(view).get(k)}
    if own:
        new[OWN_META] = own
    out["status"] = new
    md = out.setdefault("metadata", {})
    if _md(view).get("resourceVersion"):
        md["resourceVersion"] = _md(view)["resourceVersion"]
    return out


# -- registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """A resource the API serves from another one's objects."""

    resource: Resource
    storage: Resource
    from_storage: Callable[[dict[str, Any]], dict[str, Any]]
    to_storage: Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]
    #: writes change the stored object's status only (DeviceStatus); no create, no delete of its own
    status_only: bool = False


VIEWS: dict[tuple[str, str, str], View] = {
    (DEVICES_GROUP, V1ALPHA2, "devices"): View(DEVICES_V1ALPHA2, DEVICES, device_from_storage, device_to_storage),
    (DEVICES_GROUP, V1ALPHA2, "devicemodels"): View(DEVICEMODELS_V1ALPHA2, DEVICEMODELS, model_from_storage, model_to_storage),
    (DEVICES_GROUP, "v1beta1", "devicestatuses"): View(DEVICESTATUSES, DEVICES, status_from_storage, status_to_storage, status_only=True),
}


def view_for(group: str, version: str, plural: str) -> View | None:
    return VIEWS.get((group, version, plural))
