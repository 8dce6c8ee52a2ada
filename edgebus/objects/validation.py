"""Object validation with Kubernetes-style messages: the metadata every object shares, then
the check its kind registered (:mod:`edgebus.objects.checks`), all problems raised together
as one :class:`edgebus.errors.Invalid`. The core kinds without a module of their own
(ConfigMap, Secret, Node, Event) are checked here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from edgebus.errors import Invalid

# each of these modules registers the checks of its kinds (edgebus.objects.checks.checks)
from edgebus.objects import (  # noqa: F401
    device_checks,
    disruption,
    nodegroups,
    pod_checks,
    rbac,
    runtimeclass,
    services,
    workloads,
)
from edgebus.objects.checks import Causes, check_dns_label, check_string_map, checks, kind_check, name_rule, register_name_rule
from edgebus.objects.resources import CONFIGMAPS, NAMESPACES, NODES, SECRETS, Resource

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
MAX_CONFIG_BYTES = 1024 * 1024

register_name_rule(NAMESPACES.plural, check_dns_label)


def _check_owners(c: Causes, md: dict[str, Any]) -> None:
    """``ownerReferences`` (the garbage collector's graph) and ``finalizers``, as Kubernetes
    checks them."""
    refs = md.get("ownerReferences")
    if refs is not None:
        if not isinstance(refs, list):
            c.type_error("metadata.ownerReferences", "a list", refs)
        else:
            controllers = 0
            for i, r in enumerate(refs):
                f = f"metadata.ownerReferences[{i}]"
                if not isinstance(r, dict):
                    c.type_error(f, "an object", r)
                    continue
                for k in ("apiVersion", "kind", "name", "uid"):
                    if not isinstance(r.get(k), str) or not r[k]:
                        c.required(f"{f}.{k}")
                for k in ("controller", "blockOwnerDeletion"):
                    if r.get(k) is not None and not isinstance(r[k], bool):
                        c.type_error(f"{f}.{k}", "a boolean", r[k])
                controllers += 1 if r.get("controller") is True else 0
            if controllers > 1:
                c.invalid("metadata.ownerReferences", refs, "Only one reference can have Controller set to true")
    fins = md.get("finalizers")
    if fins is not None and (not isinstance(fins, list) or not all(isinstance(x, str) and x for x in fins)):
        c.type_error("metadata.finalizers", "a list of strings", fins)


def validate(resource: Resource, obj: Any, *, namespace: str | None = None) -> None:
    """Raise :class:`Invalid` unless ``obj`` is a valid object of ``resource``."""
    if not isinstance(obj, dict):
        raise Invalid(f"{resource.kind} is invalid: body must be a JSON object", details={"kind": resource.kind})
    c = Causes()
    md = obj.get("metadata")
    name = ""
    if not isinstance(md, dict):
        c.required("metadata")
        md = {}
    else:
        name = n if isinstance(n := md.get("name"), str) else ""
        name_rule(resource.plural)(c, "metadata.name", md.get("name"))
        check_string_map(c, "metadata.labels", md.get("labels"), labels=True)
        check_string_map(c, "metadata.annotations", md.get("annotations"), labels=False)
        _check_owners(c, md)
        if resource.namespaced and namespace and md.get("namespace") not in (None, "", namespace):
            c.invalid("metadata.namespace", md.get("namespace"), "does not match the namespace of the request")
    if obj.get("kind") not in (None, resource.kind):
        c.invalid("kind", obj.get("kind"), f"must be {resource.kind}")
    if obj.get("apiVersion") not in (None, resource.api_version):
        c.invalid("apiVersion", obj.get("apiVersion"), f"must be {resource.api_version}")
    checker = kind_check(resource.plural)
    if checker is not None:
        checker(c, obj)
    c.raise_if_any(resource.kind, name or "")


# -- the core kinds ----------------------------------------------------------------------------


def _check_config_data(c: Causes, obj: dict[str, Any], *, base64_values: bool, field: str = "data") -> int:
    data = obj.get(field)
    if data is None:
        return 0
    if not isinstance(data, dict):
        c.type_error(field, "a map of strings", data)
        return 0
    size = 0
    for k, v in data.items():
        if not isinstance(k, str) or not _CONFIG_KEY.fullmatch(k) or len(k) > 253 or k in (".", "..") or k.startswith(".."):
            c.invalid(f"{field}[{k}]", k, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'")
            continue
        if not isinstance(v, str):
            c.type_error(f"{field}[{k}]", "a string", v)
            continue
        if base64_values:
            try:
                size += len(base64.b64decode(v, validate=True))
            except (binascii.Error, ValueError):
                c.invalid(f"{field}[{k}]", "<value>", "must be base64-encoded")
        else:
            size += len(v.encode())
    return size


@checks(CONFIGMAPS.plural)
def _check_configmap(c: Causes, obj: dict[str, Any]) -> None:
    size = _check_config_data(c, obj, base64_values=False)
    size += _check_config_data(c, obj, base64_values=True, field="binaryData")
    data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
    if isinstance(data, dict) and isinstance(binary, dict):
        for k in set(data) & set(binary):
            c.duplicate(f"binaryData[{k}]", k)
    if size > MAX_CONFIG_BYTES:
        c.add("data", "FieldValueTooLong", f"Too long: must have at most {MAX_CONFIG_BYTES} bytes")


@checks(SECRETS.plural)
def _check_secret(c: Causes, obj: dict[str, Any]) -> None:
    size = _check_config_data(c, obj, base64_values=True)
    _check_config_data(c, obj, base64_values=False, field="stringData")
    t = obj.get("type")
    if t is not None and not isinstance(t, str):
        c.type_error("type", "a string", t)
    if size > MAX_CONFIG_BYTES:
        c.add("data", "FieldValueTooLong", f"Too long: must have at most {MAX_CONFIG_BYTES} bytes")


@checks(NODES.plural)
def _check_node(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, dict):
        c.type_error("spec", "an object", spec)
    pod_checks.check_node_quantities(c, obj)


@checks("events")
def _check_event(c: Causes, obj: dict[str, Any]) -> None:
    io = obj.get("involvedObject")
    if not isinstance(io, dict):
        c.required("involvedObject")
    for k in ("reason", "message", "type"):
        if obj.get(k) is not None and not isinstance(obj.get(k), str):
            c.type_error(k, "a string", obj.get(k))


def normalize_secret(obj: dict[str, Any]) -> None:
    """Fold ``stringData`` into base64 ``data``, as the Kubernetes API server does."""
    sd = obj.pop("stringData", None)
    if isinstance(sd, dict):
        data = obj.setdefault("data", {}) or {}
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data
    obj.setdefault("type", "Opaque")
