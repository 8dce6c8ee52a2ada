"""Kubernetes API shapes shared by every HTTP face of edgebus (the cloud apiserver and each
edge's metaserver): URL checks, query parameters, list / watch / Table bodies, discovery.

Pure functions, no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from edgebus import __version__, names
from edgebus.errors import ApiError, BadRequest, NotFound
from edgebus.objects import RBAC_RESOURCES, RESOURCES, REVIEWS, Resource, served, tables
from edgebus.objects.resources import METRICS
from edgebus.objects.device_views import VIEWS
from edgebus.objects.resources import EVENT_VIEWS
from edgebus.objects.selectors import field_predicate, label_predicate
from edgebus.objectstore import SCALE_SUBRESOURCE, STATUS_SUBRESOURCE

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

#: Create-only subresources, as Kubernetes lists them in discovery: ``kubectl drain`` looks
#: for ``pods/eviction`` (kind Eviction of policy/v1) to evict rather than delete.
SUBRESOURCES: dict[tuple[str, str], tuple[dict[str, Any], ...]] = {
    ("", "pods"): (
        {"name": "pods/binding", "kind": "Binding", "verbs": ["create"]},
        {"name": "pods/eviction", "kind": "Eviction", "group": "policy", "version": "v1", "verbs": ["create"]},
    ),
}


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


# -- URLs ------------------------------------------------------------------------------


def resource_for(plural: str, *, namespaced_path: bool, group: str = "", version: str = "v1") -> Resource:
    """The resource named by ``plural`` in a URL, checking it fits the URL's group, version
    and scope (``/api/v1`` serves the core group only)."""
    r = RESOURCES.get(plural)
    if r is not None and (r.group != group or r.version != version):
        r = EVENT_VIEWS.get((group, version, plural))
    if r is None or (namespaced_path and not r.namespaced) or r.group != group or r.version != version:
        raise NotFound("the server could not find the requested resource", details={"kind": plural})
    return r


def check_path_name(resource: Resource, name: str) -> None:
    """A name in a URL that cannot exist is simply not found (as Kubernetes answers)."""
    valid = names.is_object_name(name) if resource in RBAC_RESOURCES else names.is_dns1123_subdomain(name)
    if not valid:
        raise NotFound(f'{resource.plural} "{name}" not found', details={"name": name, "kind": resource.plural})


def check_path_namespace(namespace: str) -> None:
    if not names.is_dns1123_subdomain(namespace):
        raise NotFound(f'namespaces "{namespace}" not found', details={"name": namespace, "kind": "namespaces"})


# -- bodies and query parameters ---------------------------------------------------------


def _reject_constant(c: str) -> Any:
    raise ValueError(f"{c} is not valid JSON")


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def _int64(text: str) -> int:
    n = int(text)
    if not INT64_MIN <= n <= INT64_MAX:
        raise ValueError(f"the number {text[:40]} is out of the range of a 64-bit integer")
    return n


def _finite(text: str) -> float:
    f = float(text)
    if not math.isfinite(f):
        raise ValueError(f"the number {text[:40]} is out of range")
    return f


def parse_json(body: bytes) -> Any:
    """Decode a request body; malformed JSON, NaN / Infinity, and numbers that no Kubernetes
    field holds (integers beyond 64 bits, floats that overflow) are a 400."""
    if not body or not body.strip():
        raise BadRequest("the request body is empty")
    try:
        return json.loads(body, parse_constant=_reject_constant, parse_int=_int64, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def parse_bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def parse_timeout(value: str | None) -> float | None:
    if value in (None, ""):
        return None
    try:
        t = int(value)
    except ValueError:
        raise BadRequest(f'invalid timeoutSeconds "{value}": must be an integer') from None
    if t < 0:
        raise BadRequest(f'invalid timeoutSeconds "{value}": must not be negative')
    return float(t) if t else None


@dataclass(frozen=True, slots=True)
class WatchParams:
    from_revision: int | None
    label_selector: str | None
    field_selector: str | None
    timeout: float | None


def watch_params(query: dict[str, str], resource: str | None = None) -> WatchParams:
    """Parse and check a watch request's parameters before the response starts (with
    ``resource``, a plural, also that it can be selected by the fields named)."""
    rv = query.get("resourceVersion")
    from_revision: int | None = None
    if rv not in (None, "", "0"):
        try:
            from_revision = int(rv)
        except ValueError:
            raise BadRequest(f'invalid resourceVersion "{rv}": must be an integer') from None
        if from_revision < 0:
            raise BadRequest(f'invalid resourceVersion "{rv}"')
    ls, fs = query.get("labelSelector") or None, query.get("fieldSelector") or None
    label_predicate(ls)  # raise BadRequest now, not in the middle of the stream
    field_predicate(fs, resource)
    return WatchParams(from_revision, ls, fs, parse_timeout(query.get("timeoutSeconds")))


# -- response bodies -------------------------------------------------------------------


def list_body(resource: Resource, items: list[dict[str, Any]], revision: int) -> dict[str, Any]:
    return {
        "apiVersion": resource.api_version,
        "kind": resource.list_kind,
        "metadata": {"resourceVersion": str(revision)},
        "items": items,
    }


def watch_line(event_type: str, obj: dict[str, Any]) -> bytes:
    """One event of a watch stream: a JSON object on its own line."""
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def wants_table(accept: str | None) -> bool:
    """kubectl asks for server-side printing with ``Accept: application/json;as=Table;...``."""
    return accept is not None and "as=Table" in accept


def table_body(resource: Resource, objs: list[dict[str, Any]], revision: int | None = None) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table (what ``kubectl get`` prints), rows carrying object metadata."""
    cols = tables.columns(resource.plural, wide=True)
    defs = [
        {
            "name": c.name.title() if c.name != "IP" else "IP",
            "type": c.type,
            "format": "name" if c.name == "NAME" else "",
            "description": c.description,
            "priority": 1 if c.wide else 0,
        }
        for c in cols
    ]
    rows = [
        {
            "cells": [c.get(o) for c in cols],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata") or {}},
        }
        for o in objs
    ]
    md: dict[str, Any] = {} if revision is None else {"resourceVersion": str(revision)}
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md, "columnDefinitions": defs, "rows": rows}


# -- discovery -------------------------------------------------------------------------


def version_info() -> dict[str, Any]:
    return {
        "major": "1",
        "minor": "30",
        "gitVersion": "v1.30.0-edgebus",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "python",
        "platform": "linux/amd64",
        "edgebusVersion": __version__,
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


#: Subresources served beyond ``status``: (resource, subresource) -> (kind, group, version, verbs)
EXTRA_SUBRESOURCES: dict[tuple[str, str], tuple[str, str, str, list[str]]] = {
    ("serviceaccounts", "token"): ("TokenRequest", "authentication.k8s.io", "v1", ["create"]),
}


def _served(views: bool) -> list[Resource]:
    """The resources served: the stored ones and their views (``events.k8s.io``), and
    (``views``) the device views served from Devices."""
    return served() + ([v.resource for v in VIEWS.values()] if views else [])


def _groups(views: bool = False) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in (*_served(views), *REVIEWS.values(), *(METRICS.values() if views else ())):
        if r.group and r.version not in out.setdefault(r.group, []):
            out[r.group].append(r.version)
    return out


def _group_body(group: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(*, views: bool = False) -> dict[str, Any]:
    """``GET /apis``: the named API groups."""
    groups = [_group_body(g, vs) for g, vs in sorted(_groups(views).items())]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str, *, views: bool = False) -> dict[str, Any]:
    """``GET /apis/{group}``."""
    versions = _groups(views).get(group)
    if not versions:
        raise NotFound("the server could not find the requested resource")
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_body(group, versions)}


def api_resource_list(group: str = "", version: str = "v1", *, verbs: list[str] | None = None, views: bool = False) -> dict[str, Any]:
    """``GET /api/v1`` or ``GET /apis/{group}/{version}``: the discovery document kubectl reads."""
    verbs = verbs or VERBS
    out: list[dict[str, Any]] = []
    if group and version not in _groups(views).get(group, []):
        raise NotFound("the server could not find the requested resource")
    for r in _served(views):
        if r.group != group or r.version != version:
            continue
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular or r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        out.append(entry)
        if r.plural in STATUS_SUBRESOURCE:
            out.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]})
        for (plural, sub), (kind, g, v, sverbs) in EXTRA_SUBRESOURCES.items():
            if plural == r.plural:
                out.append({"name": f"{plural}/{sub}", "singularName": "", "namespaced": r.namespaced, "group": g, "version": v, "kind": kind, "verbs": sverbs})
        if r.plural in SCALE_SUBRESOURCE:
            out.append(
                {"name": f"{r.plural}/scale", "singularName": "", "namespaced": r.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}
            )
        for extra in SUBRESOURCES.get((r.group, r.plural), ()):
            out.append({"singularName": "", "namespaced": r.namespaced, **extra})
    for r in REVIEWS.values():
        if r.group == group and r.version == version:
            out.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": ["create"]})
    for r in METRICS.values() if views else ():
        if r.group == group and r.version == version:
            out.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "list"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version, "resources": out}
