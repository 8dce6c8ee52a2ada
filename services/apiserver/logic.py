"""Pure helpers of the apiserver: request checks and patches. The Kubernetes bodies it
shares with the edge metaservers (list, watch, Table, discovery, URL and query checks) are
in :mod:`edgebus.kube` and re-exported here.

Nothing here does I/O; :mod:`services.apiserver.http` wires these to the object store.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from edgebus.errors import ApiError, BadRequest, Invalid
from edgebus.kube import (  # noqa: F401 - re-exported for the routes
    MethodNotAllowed,
    WatchParams,
    api_group,
    api_group_list,
    api_resource_list,
    api_versions,
    check_path_name,
    check_path_namespace,
    list_body,
    parse_bool,
    parse_json,
    parse_timeout,
    resource_for,
    table_body,
    version_info,
    wants_table,
    watch_line,
    watch_params,
)
from edgebus.objects import Resource

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


# -- request checks ---------------------------------------------------------------------


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
    doc = copy.deepcopy(target)
    for op in ops:
        try:
            doc = jsonpatch.apply_patch(doc, [op], in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            raise Invalid(f"{_REJECTED}: testing value {op['path']} failed: test failed") from None
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError, ValueError):
            where = op.get("from") if op["op"] in ("move", "copy") and isinstance(op.get("from"), str) else op["path"]
            raise Invalid(f'{_REJECTED}: {op["op"]} operation does not apply: doc is missing path: "{where}": missing value') from None
    return doc


_REJECTED = "the server rejected our request due to an error in our request"


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


def field_manager(query: Any, user_agent: str | None) -> str:
    """The manager of a write: ``fieldManager``, else the client's name (its user agent up
    to the first ``/``), as Kubernetes defaults it."""
    m = query.get("fieldManager")
    if m:
        if len(m) > 128:
            raise BadRequest("fieldManager must be at most 128 characters")
        return str(m)
    return (user_agent or "unknown").split("/", 1)[0] or "unknown"


def parse_apply(body: bytes) -> dict[str, Any]:
    """A server-side apply body: the configuration as YAML (or JSON)."""
    import yaml

    try:
        obj = yaml.safe_load(body.decode())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadRequest(f"error decoding YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise BadRequest("an apply patch must be an object")
    return obj


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
