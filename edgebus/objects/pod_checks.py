"""Pod checks, as Kubernetes decides them: a pod's shape (containers, volumes, DNS settings;
registered as the check of ``pods``), resource quantities (requests and limits, node
capacity, volume sizes) and what an update of a pod may change (``ValidatePodUpdate``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from edgebus.errors import Invalid
from edgebus.objects import poddns
from edgebus.objects.checks import Causes, check_dns_label, check_dns_subdomain, check_qualified, checks
from edgebus.objects.quantity import QUANTITY_MESSAGE, parse_quantity
from edgebus.objects.resources import PODS
from edgebus.objects.shapes import as_dict

RESTART_POLICIES = ("Always", "OnFailure", "Never")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

#: Kubernetes' own words for what a pod update may change
POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def check_quantity(c: Causes, field: str, value: Any, *, non_negative: bool = True) -> Any:
    """The quantity's value, or None after recording why it is not one."""
    try:
        q = parse_quantity(value)
    except ValueError:
        c.invalid(field, value if isinstance(value, str | int | float) and not isinstance(value, bool) else str(value), QUANTITY_MESSAGE)
        return None
    if non_negative and q < 0:
        c.invalid(field, value, "must be greater than or equal to 0")
        return None
    return q


def check_quantity_map(c: Causes, field: str, m: Any) -> dict[str, Any]:
    if m is None:
        return {}
    if not isinstance(m, dict):
        c.type_error(field, "a map of resource names to quantities", m)
        return {}
    out = {}
    for k, v in m.items():
        if not isinstance(k, str):
            c.type_error(field, "a map with string keys", k)
            continue
        check_qualified(c, f"{field}[{k}]", k)
        q = check_quantity(c, f"{field}[{k}]", v)
        if q is not None:
            out[k] = q
    return out


def check_resources(c: Causes, field: str, resources: Any) -> None:
    """``resources`` of a container: quantities, and no request above its limit."""
    if resources is None:
        return
    if not isinstance(resources, dict):
        c.type_error(field, "an object", resources)
        return
    limits = check_quantity_map(c, f"{field}.limits", resources.get("limits"))
    requests = check_quantity_map(c, f"{field}.requests", resources.get("requests"))
    for name, req in requests.items():
        lim = limits.get(name)
        if lim is not None and req > lim:
            c.invalid(f"{field}.requests", resources["requests"][name], f"must be less than or equal to {name} limit of {resources['limits'][name]}")


def check_volume_quantities(c: Causes, field: str, volume: dict[str, Any]) -> None:
    ed = volume.get("emptyDir")
    if isinstance(ed, dict) and ed.get("sizeLimit") is not None:
        check_quantity(c, f"{field}.emptyDir.sizeLimit", ed["sizeLimit"])


def check_node_quantities(c: Causes, obj: dict[str, Any]) -> None:
    status = obj.get("status")
    if isinstance(status, dict):
        for k in ("capacity", "allocatable"):
            check_quantity_map(c, f"status.{k}", status.get(k))


# -- updates ---------------------------------------------------------------------------


def check_pod_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Raise :class:`Invalid` if ``new`` changes the spec of ``old`` beyond what Kubernetes
    allows. One edgebus addition: ``spec.nodeName`` may be set once while it is empty (the
    binding), never changed after."""
    before = as_dict(old.get("spec"))
    after = as_dict(new.get("spec"))
    c = Causes()
    normalized = copy.deepcopy(after)
    for key in ("containers", "initContainers"):
        a, b = normalized.get(key), before.get(key)
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for x, y in zip(a, b, strict=True):
                if isinstance(x, dict) and isinstance(y, dict):
                    if "image" in y:
                        x["image"] = y["image"]
                    else:
                        x.pop("image", None)
    ads_old, ads_new = before.get("activeDeadlineSeconds"), after.get("activeDeadlineSeconds")
    if isinstance(ads_old, int) and ads_new is None:
        c.invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value")
    elif isinstance(ads_old, int) and isinstance(ads_new, int) and ads_new > ads_old:
        c.invalid("spec.activeDeadlineSeconds", ads_new, "must be less than or equal to previous value")
    _same(normalized, before, "activeDeadlineSeconds")
    tol_old, tol_new = before.get("tolerations") or [], after.get("tolerations") or []
    if isinstance(tol_old, list) and isinstance(tol_new, list) and all(t in tol_new for t in tol_old):
        _same(normalized, before, "tolerations")
    g_old = before.get("terminationGracePeriodSeconds")
    if isinstance(g_old, int) and g_old < 0 and after.get("terminationGracePeriodSeconds") == 1:
        _same(normalized, before, "terminationGracePeriodSeconds")
    if not before.get("nodeName"):
        _same(normalized, before, "nodeName")
    if normalized != before:
        changed = ", ".join(_differences(before, normalized, "spec")[:5])
        c.add("spec", "FieldValueForbidden", f"Forbidden: {POD_UPDATE_FORBIDDEN} (changed: {changed})")
    md = new.get("metadata") or {}
    c.raise_if_any("Pod", str(md.get("name") or ""))


def _same(target: dict[str, Any], source: dict[str, Any], key: str) -> None:
    if key in source:
        target[key] = copy.deepcopy(source[key])
    else:
        target.pop(key, None)


def _differences(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                out.extend(_differences(a.get(k), b.get(k), f"{path}.{k}"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                out.extend(_differences(x, y, f"{path}[{i}]"))
        return out
    return [path]


__all__ = ["Invalid", "POD_UPDATE_FORBIDDEN", "check_node_quantities", "check_pod_update", "check_quantity", "check_resources"]


# -- the shape of a pod ----------------------------------------------------------------------


@checks(PODS.plural)
def check_pod(c: Causes, obj: dict[str, Any]) -> None:
    """A Pod: its containers, init containers, volumes, DNS settings and restart policy."""
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
    if spec.get("runtimeClassName") not in (None, ""):
        check_dns_subdomain(c, "spec.runtimeClassName", spec.get("runtimeClassName"))
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        c.unsupported("spec.restartPolicy", rp, RESTART_POLICIES)
    poddns.check_pod_dns(c, spec)
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
                check_volume_quantities(c, f, v)
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
        check_resources(c, f"{f}.resources", ct.get("resources"))
