"""Pure helpers of the apiserver: request checks, patches, list / watch / table / discovery bodies.

Nothing here does I/O; :mod:`services.apiserver.http` wires these to the object store.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import jsonpatch

from edgebus import __version__, names
from edgebus.errors import ApiError, BadRequest, Invalid, NotFound
from edgebus.objects import RESOURCES, Resource, tables
from edgebus.objects.selectors import field_predicate, label_predicate
from edgebus.objectstore import STATUS_SUBRESOURCE

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


# -- resources and request checks ------------------------------------------------------


def resource_for(plural: str, *, namespaced_path: bool) -> Resource:
    """The resource named by ``plural`` in a URL, checking it fits the URL's scope."""
    r = RESOURCES.get(plural)
    if r is None or (namespaced_path and not r.namespaced):
        raise NotFound("the server could not find the requested resource", details={"kind": plural})
    return r


def check_path_name(resource: Resource, name: str) -> None:
    """A name in a URL that cannot exist is simply not found (as Kubernetes answers)."""
    if not names.is_dns1123_subdomain(name):
        raise NotFound(f'{resource.plural} "{name}" not found', details={"name": name, "kind": resource.plural})


def check_path_namespace(namespace: str) -> None:
    if not names.is_dns1123_subdomain(namespace):
        raise NotFound(f'namespaces "{namespace}" not found', details={"name": namespace, "kind": "namespaces"})


def _reject_constant(c: str) -> Any:
    raise ValueError(f"{c} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Decode a request body; malformed JSON (or NaN / Infinity) is a 400."""
    if not body or not body.strip():
        raise BadRequest("the request body is empty")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def parse_object(body: bytes) -> dict[str, Any]:
    obj = parse_json(body)
    if not isinstance(obj, dict):
        raise BadRequest(f"the request body must be a JSON object, not {_json_type(obj)}")
    return obj


def _json_type(v: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(v), "a number")


def _metadata(obj: dict[str, Any]) -> dict[str, Any] | None:
    md = obj.get("metadata")
    return md if isinstance(md, dict) else None


def check_create(resource: Resource, obj: dict[str, Any], namespace: str | None) -> None:
    """POST into namespace ``namespace``: the body's namespace, if any, must be that one."""
    md = _metadata(obj)
    if md is None or not resource.namespaced or namespace is None:
        return
    body_ns = md.get("namespace")
    if body_ns not in (None, "") and body_ns != namespace:
        raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")


def check_update(resource: Resource, obj: dict[str, Any], namespace: str | None, name: str) -> None:
    """PUT / PATCH result at ``.../{name}``: the name (filled in if absent) and namespace must match."""
    check_create(resource, obj, namespace)
    md = _metadata(obj)
    if md is None:
        return
    body_name = md.get("name")
    if body_name in (None, ""):
        md["name"] = name
    elif body_name != name:
        raise BadRequest(f"the name of the object ({body_name}) does not match the name on the URL ({name})")


# -- query parameters ------------------------------------------------------------------


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


def watch_params(query: dict[str, str]) -> WatchParams:
    """Parse and check a watch request's parameters before the response starts."""
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
    field_predicate(fs)
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


def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}


def api_resource_list() -> dict[str, Any]:
    """``GET /api/v1``: the discovery document kubectl reads."""
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    out: list[dict[str, Any]] = []
    for r in RESOURCES.values():
        if r.group:
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
        out.append(entry)
        if r.plural in STATUS_SUBRESOURCE:
            out.append({"name": f"{r.plural}/status", "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": out}


# -- patches ---------------------------------------------------------------------------


def patch_type(content_type: str | None) -> str:
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct not in PATCH_TYPES:
        raise UnsupportedMediaType(
            f'the body of the request was in an unknown format - accepted media types include: {", ".join(PATCH_TYPES)}'
        )
    return ct


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


_JSON_PATCH_OPS = {"add": ("value",), "remove": (), "replace": ("value",), "move": ("from",), "copy": ("from",), "test": ("value",)}


def json_patch(target: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch. A malformed patch is a 400; one that cannot apply is a 422."""
    if not isinstance(ops, list):
        raise BadRequest("a JSON patch must be an array of operations")
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or not isinstance(op.get("path"), str):
            raise BadRequest(f"JSON patch operation {i} must be an object with string 'op' and 'path'")
        need = _JSON_PATCH_OPS.get(op["op"])
        if need is None:
            raise BadRequest(f"JSON patch operation {i}: unknown op {op['op']!r}")
        for k in need:
            if k not in op:
                raise BadRequest(f"JSON patch operation {i} ({op['op']}) is missing {k!r}")
    try:
        return jsonpatch.apply_patch(target, ops, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Invalid(f"the server rejected our request due to an error in our request: test failed: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError, ValueError) as exc:
        raise Invalid(f"the server rejected our request due to an error in our request: {exc}") from None


#: Strategic-merge keys: lists of objects under these fields merge element-wise by the key.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "addresses": "type",
}


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """A merge patch that understands the common parts of Kubernetes' strategic merge:
    lists of objects with a merge key (see :data:`MERGE_KEYS`) merge element-wise,
    ``$patch: delete`` / ``$patch: replace``, ``$setElementOrder/<field>`` and
    ``$deleteFromPrimitiveList/<field>``; other ``$`` directives are dropped."""
    if isinstance(patch, list):
        return _strategic_list(target, patch, field)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue
        if v is None:
            out.pop(k, None)
            continue
        merged = strategic_merge_patch(out.get(k), v, k)
        if merged is None:
            out.pop(k, None)
        else:
            out[k] = merged
    for k, v in patch.items():
        if k.startswith("$deleteFromPrimitiveList/") and isinstance(v, list):
            f = k.split("/", 1)[1]
            if isinstance(out.get(f), list):
                out[f] = [x for x in out[f] if x not in v]
        elif k.startswith("$setElementOrder/") and isinstance(v, list):
            f = k.split("/", 1)[1]
            if isinstance(out.get(f), list):
                out[f] = _reorder(out[f], v, MERGE_KEYS.get(f))
    return out


def _strategic_list(target: Any, patch: list[Any], field: str) -> list[Any]:
    key = MERGE_KEYS.get(field)
    if key is None or not isinstance(target, list) or not all(isinstance(p, dict) and key in p for p in patch):
        return [_strip_directives(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "delete")]
    out = copy.deepcopy(target)
    for p in patch:
        idx = next((i for i, t in enumerate(out) if isinstance(t, dict) and t.get(key) == p[key]), None)
        if p.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip_directives(p))
        else:
            out[idx] = strategic_merge_patch(out[idx], p, "")
    return out


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        return x.get(key) if key and isinstance(x, dict) else x

    wanted = [ident(o) for o in order]
    ranked = [x for w in wanted for x in items if ident(x) == w]
    rest = [x for x in items if ident(x) not in wanted]
    return ranked + rest


def _strip_directives(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items() if not k.startswith("$")}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v]
    return v


def apply_patch(content_type: str | None, current: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The object that results from applying the PATCH request body to ``current``."""
    kind = patch_type(content_type)
    patch = parse_json(body)
    if kind == JSON_PATCH:
        out = json_patch(current, patch)
    else:
        if not isinstance(patch, dict):
            raise BadRequest(f"a merge patch must be a JSON object, not {_json_type(patch)}")
        out = merge_patch(current, patch) if kind == MERGE_PATCH else strategic_merge_patch(current, patch)
    if not isinstance(out, dict):
        raise Invalid("the patched object must be a JSON object")
    return out
