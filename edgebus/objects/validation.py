"""Object validation with Kubernetes-style messages.

Every problem is collected as a *cause* (``field``, ``reason``, ``message``) and raised
together as :class:`edgebus.errors.Invalid`, whose message reads like the Kubernetes one:
``Pod "web" is invalid: spec.containers[0].image: Required value``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from edgebus.errors import Invalid
from edgebus.objects.resources import CONFIGMAPS, NAMESPACES, NODES, PODS, SECRETS, Resource

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
MAX_CONFIG_BYTES = 1024 * 1024

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


class Causes:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, reason: str, message: str) -> None:
        self.items.append({"field": field, "reason": reason, "message": message})

    def required(self, field: str) -> None:
        self.add(field, "FieldValueRequired", "Required value")

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.add(field, "FieldValueInvalid", f"Invalid value: {_show(value)}: {detail}")

    def unsupported(self, field: str, value: Any, allowed: tuple[str, ...]) -> None:
        opts = ", ".join(f'"{a}"' for a in allowed)
        self.add(field, "FieldValueNotSupported", f"Unsupported value: {_show(value)}: supported values: {opts}")

    def duplicate(self, field: str, value: Any) -> None:
        self.add(field, "FieldValueDuplicate", f"Duplicate value: {_show(value)}")

    def type_error(self, field: str, expected: str, value: Any) -> None:
        self.add(field, "FieldValueTypeInvalid", f"Invalid value: {_show(value)}: must be {expected}")

    def raise_if_any(self, kind: str, name: str) -> None:
        if not self.items:
            return
        detail = "; ".join(f"{c['field']}: {c['message']}" for c in self.items)
        if len(self.items) > 1:
            detail = f"[{detail}]"
        raise Invalid(
            f'{kind} "{name}" is invalid: {detail}',
            details={"name": name, "kind": kind, "causes": self.items},
        )


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v) if not isinstance(v, (dict, list)) else type(v).__name__


def check_dns_label(c: Causes, field: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        c.required(field)
    elif len(value) > 63 or not DNS1123_LABEL.fullmatch(value):
        c.invalid(field, value, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")


def check_dns_subdomain(c: Causes, field: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        c.required(field)
    elif len(value) > 253 or not DNS1123_SUBDOMAIN.fullmatch(value):
        c.invalid(field, value, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")


def _check_qualified(c: Causes, field: str, key: str) -> None:
    prefix, sep, name = key.rpartition("/")
    if sep and not prefix:
        c.invalid(field, key, "prefix part must be non-empty")
        return
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        c.invalid(field, key, "prefix part must be a DNS-1123 subdomain")
        return
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        c.invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")


def _check_string_map(c: Causes, field: str, m: Any, *, labels: bool) -> None:
    if m is None:
        return
    if not isinstance(m, dict):
        c.type_error(field, "a map of strings", m)
        return
    for k, v in m.items():
        if not isinstance(k, str):
            c.type_error(field, "a map with string keys", k)
            continue
        _check_qualified(c, field, k)
        if not isinstance(v, str):
            c.type_error(f"{field}[{k}]", "a string", v)
        elif labels and (len(v) > 63 or not _LABEL_VALUE.fullmatch(v)):
            c.invalid(f"{field}[{k}]", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")


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
        name = md.get("name") if isinstance(md.get("name"), str) else ""
        if resource is NAMESPACES:
            check_dns_label(c, "metadata.name", md.get("name"))
        elif resource.plural in _RBAC_CHECKERS:
            from edgebus.objects.rbac import check_rbac_name  # rbac builds on this module

            check_rbac_name(c, "metadata.name", md.get("name"))
        else:
            check_dns_subdomain(c, "metadata.name", md.get("name"))
        _check_string_map(c, "metadata.labels", md.get("labels"), labels=True)
        _check_string_map(c, "metadata.annotations", md.get("annotations"), labels=False)
        if resource.namespaced and namespace and md.get("namespace") not in (None, "", namespace):
            c.invalid("metadata.namespace", md.get("namespace"), "does not match the namespace of the request")
    if obj.get("kind") not in (None, resource.kind):
        c.invalid("kind", obj.get("kind"), f"must be {resource.kind}")
    if obj.get("apiVersion") not in (None, resource.api_version):
        c.invalid("apiVersion", obj.get("apiVersion"), f"must be {resource.api_version}")
    checker = _CHECKERS.get(resource.plural) or _rbac_checker(resource.plural)
    if checker is not None:
        checker(c, obj)
    c.raise_if_any(resource.kind, name or "")


# -- per kind ---------------------------------------------------------------------------


def _check_pod(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        c.required("spec")
        return
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        c.required("spec.containers")
    else:
        _check_containers(c, "spec.containers", containers, set())
    init = spec.get("initContainers")
    if init is not None:
        if not isinstance(init, list):
            c.type_error("spec.initContainers", "a list", init)
        else:
            seen = {x.get("name") for x in containers or [] if isinstance(x, dict) and isinstance(x.get("name"), str)}
            _check_containers(c, "spec.initContainers", init, seen)
    if spec.get("nodeName") not in (None, ""):
        check_dns_subdomain(c, "spec.nodeName", spec.get("nodeName"))
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        c.unsupported("spec.restartPolicy", rp, RESTART_POLICIES)
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool) or grace < 0):
        c.invalid("spec.terminationGracePeriodSeconds", grace, "must be a non-negative integer")
    volumes = spec.get("volumes")
    if volumes is not None:
        if not isinstance(volumes, list):
            c.type_error("spec.volumes", "a list", volumes)
        else:
            names: set[str] = set()
            for i, v in enumerate(volumes):
                f = f"spec.volumes[{i}]"
                if not isinstance(v, dict):
                    c.type_error(f, "an object", v)
                    continue
                check_dns_label(c, f"{f}.name", v.get("name"))
                vname = v.get("name")
                if isinstance(vname, str):
                    if vname in names:
                        c.duplicate(f"{f}.name", vname)
                    names.add(vname)
                cm = v.get("configMap")
                if isinstance(cm, dict):
                    check_dns_subdomain(c, f"{f}.configMap.name", cm.get("name"))
                sec = v.get("secret")
                if isinstance(sec, dict):
                    check_dns_subdomain(c, f"{f}.secret.secretName", sec.get("secretName"))


def _check_containers(c: Causes, field: str, containers: list[Any], seen: set[Any]) -> None:
    for i, ct in enumerate(containers):
        f = f"{field}[{i}]"
        if not isinstance(ct, dict):
            c.type_error(f, "an object", ct)
            continue
        check_dns_label(c, f"{f}.name", ct.get("name"))
        cname = ct.get("name")
        if isinstance(cname, str):
            if cname in seen:
                c.duplicate(f"{f}.name", cname)
            seen.add(cname)
        image = ct.get("image")
        if not isinstance(image, str) or not image.strip():
            c.required(f"{f}.image")
        pp = ct.get("imagePullPolicy")
        if pp is not None and pp not in PULL_POLICIES:
            c.unsupported(f"{f}.imagePullPolicy", pp, PULL_POLICIES)
        for key in ("command", "args"):
            v = ct.get(key)
            if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
                c.type_error(f"{f}.{key}", "a list of strings", v)
        env = ct.get("env")
        if env is not None:
            if not isinstance(env, list):
                c.type_error(f"{f}.env", "a list", env)
            else:
                for j, e in enumerate(env):
                    if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not _ENV_NAME.fullmatch(e["name"]):
                        c.invalid(f"{f}.env[{j}].name", e.get("name") if isinstance(e, dict) else e, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit")
        ports = ct.get("ports")
        if ports is not None:
            if not isinstance(ports, list):
                c.type_error(f"{f}.ports", "a list", ports)
            else:
                for j, p in enumerate(ports):
                    cp = p.get("containerPort") if isinstance(p, dict) else None
                    if not isinstance(cp, int) or isinstance(cp, bool) or not 1 <= cp <= 65535:
                        c.invalid(f"{f}.ports[{j}].containerPort", cp, "must be between 1 and 65535, inclusive")


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


def _check_configmap(c: Causes, obj: dict[str, Any]) -> None:
    size = _check_config_data(c, obj, base64_values=False)
    size += _check_config_data(c, obj, base64_values=True, field="binaryData")
    data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
    if isinstance(data, dict) and isinstance(binary, dict):
        for k in set(data) & set(binary):
            c.duplicate(f"binaryData[{k}]", k)
    if size > MAX_CONFIG_BYTES:
        c.add("data", "FieldValueTooLong", f"Too long: must have at most {MAX_CONFIG_BYTES} bytes")


def _check_secret(c: Causes, obj: dict[str, Any]) -> None:
    size = _check_config_data(c, obj, base64_values=True)
    _check_config_data(c, obj, base64_values=False, field="stringData")
    t = obj.get("type")
    if t is not None and not isinstance(t, str):
        c.type_error("type", "a string", t)
    if size > MAX_CONFIG_BYTES:
        c.add("data", "FieldValueTooLong", f"Too long: must have at most {MAX_CONFIG_BYTES} bytes")


def _check_node(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, dict):
        c.type_error("spec", "an object", spec)


def _check_device(c: Causes, obj: dict[str, Any]) -> None:
    from edgebus.objects import devices  # devices builds on this module

    devices.check_device(c, obj)


def _check_devicemodel(c: Causes, obj: dict[str, Any]) -> None:
    from edgebus.objects import devices

    devices.check_model(c, obj)


def _check_service(c: Causes, obj: dict[str, Any]) -> None:
    from edgebus.objects import services  # services builds on this module

    services.check_service(c, obj)


def _check_endpoints(c: Causes, obj: dict[str, Any]) -> None:
    from edgebus.objects import services

    services.check_endpoints(c, obj)


def _check_event(c: Causes, obj: dict[str, Any]) -> None:
    io = obj.get("involvedObject")
    if not isinstance(io, dict):
        c.required("involvedObject")
    for k in ("reason", "message", "type"):
        if obj.get(k) is not None and not isinstance(obj.get(k), str):
            c.type_error(k, "a string", obj.get(k))


_CHECKERS = {
    PODS.plural: _check_pod,
    CONFIGMAPS.plural: _check_configmap,
    SECRETS.plural: _check_secret,
    NODES.plural: _check_node,
    "devices": _check_device,
    "devicemodels": _check_devicemodel,
    "events": _check_event,
    "services": _check_service,
    "endpoints": _check_endpoints,
}


#: RBAC kinds and ServiceAccounts: checked by :mod:`edgebus.objects.rbac`
_RBAC_CHECKERS = {
    "roles": "check_role",
    "clusterroles": "check_cluster_role",
    "rolebindings": "check_role_binding",
    "clusterrolebindings": "check_cluster_role_binding",
}


def _rbac_checker(plural: str) -> Any:
    from edgebus.objects import rbac

    if plural == "serviceaccounts":
        return rbac.check_service_account
    name = _RBAC_CHECKERS.get(plural)
    return getattr(rbac, name) if name else None


def normalize_secret(obj: dict[str, Any]) -> None:
    """Fold ``stringData`` into base64 ``data``, as the Kubernetes API server does."""
    sd = obj.pop("stringData", None)
    if isinstance(sd, dict):
        data = obj.setdefault("data", {}) or {}
        for k, v in sd.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data
    obj.setdefault("type", "Opaque")
