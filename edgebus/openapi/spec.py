"""The OpenAPI documents of the API edgebus serves, built from the schema definitions.

* ``/openapi/v2``: one swagger 2.0 document (kubectl 1.27/1.28 read it, as protobuf, for
  validation and for ``kubectl apply``'s patches; see :mod:`edgebus.openapi.gnostic`);
* ``/openapi/v3``: a root listing one document per group-version
  (``api/v1``, ``apis/devices.kubeedge.io/v1beta1``), each at
  ``/openapi/v3/<gv>?hash=<content hash>`` (kubectl 1.29+).

Paths are generated for the resources :func:`edgebus.objects.served` lists and the views of
:data:`edgebus.objects.device_views.VIEWS` (so a resource
registered there is published here), with the operations the API really answers and the
query parameters it really honours: ``fieldValidation`` on create / replace / patch
(server-side field validation, :mod:`edgebus.openapi.fields`), selectors and watch on
lists, ``gracePeriodSeconds`` on delete. Pure: no I/O beyond reading the vendored file.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebus.objects import REVIEWS, SERVICEACCOUNTS, Resource, served
from edgebus.objects.device_views import VIEWS
from edgebus.objectstore import SCALE_SUBRESOURCE, STATUS_SUBRESOURCE
from edgebus.openapi import devices, nodegroups

VENDORED = Path(__file__).with_name("k8s-v1.30.json.gz")
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json")


@functools.cache
def definitions() -> dict[str, Any]:
    """Every schema definition: Kubernetes' core/v1 (vendored) and the devices group."""
    data = json.loads(gzip.decompress(VENDORED.read_bytes()))
    return {**data["definitions"], **devices.definitions(), **nodegroups.definitions()}


@functools.cache
def _by_gvk() -> dict[tuple[str, str, str], str]:
    out = {}
    for name, d in definitions().items():
        for g in d.get("x-kubernetes-group-version-kind") or []:
            out[(g.get("group", ""), g.get("version", ""), g.get("kind", ""))] = name
    return out


def definition_name(group: str, version: str, kind: str) -> str | None:
    return _by_gvk().get((group, version, kind))


def resource_definition(r: Resource) -> str | None:
    return definition_name(r.group, r.version, r.kind)


# -- operations ------------------------------------------------------------------------


@dataclass
class Param:
    name: str
    location: str  # "query" | "path"
    description: str
    type: str = "string"
    required: bool = False


@dataclass
class Operation:
    method: str
    action: str  # x-kubernetes-action
    operation_id: str
    description: str
    gvk: dict[str, str] | None
    body: str | None = None  # definition name of the request body
    response: str | None = None  # definition name of the 200 response
    params: list[Param] = field(default_factory=list)
    consumes: tuple[str, ...] = ("application/json", "application/yaml")


@dataclass
class PathItem:
    path: str
    params: list[Param]
    operations: list[Operation]
    group_version: str  # "api/v1" | "apis/<group>/<version>"


_FIELD_VALIDATION = Param(
    "fieldValidation",
    "query",
    "How the server handles unknown and duplicate fields in the request: Ignore (drop them), "
    "Warn (drop them, answer a Warning header per field; the default) or Strict (fail the request).",
)
_LIST_PARAMS = [
    Param("labelSelector", "query", "A selector to restrict the list of returned objects by their labels."),
    Param("fieldSelector", "query", "A selector to restrict the list of returned objects by their fields."),
    Param("resourceVersion", "query", "With watch: stream the changes after this version."),
    Param("timeoutSeconds", "query", "Timeout for the list/watch call.", type="integer"),
    Param("watch", "query", "Watch for changes to the described resources.", type="boolean"),
]
_DELETE_PARAMS = [
    Param("gracePeriodSeconds", "query", "The duration in seconds before the object should be deleted (0: at once).", type="integer"),
    Param("propagationPolicy", "query", "Whether and how garbage collection will be performed: Orphan, Background (the default) or Foreground."),
]
_LOG_PARAMS = [
    Param("container", "query", "The container for which to stream logs."),
    Param("follow", "query", "Follow the log stream of the pod.", type="boolean"),
    Param("previous", "query", "Return previous terminated container logs.", type="boolean"),
    Param("sinceSeconds", "query", "Only logs newer than this many seconds.", type="integer"),
    Param("tailLines", "query", "The number of lines from the end of the logs to show.", type="integer"),
    Param("timestamps", "query", "Add an RFC3339 timestamp to every line.", type="boolean"),
    Param("limitBytes", "query", "The number of bytes to read from the server before terminating the log output.", type="integer"),
]


def _group_id(r: Resource) -> str:
    """``CoreV1``, ``DevicesKubeedgeIoV1beta1``: the operation-id infix Kubernetes uses."""
    parts = (r.group.removesuffix(".k8s.io") or "core").replace("-", ".").split(".")
    return "".join(p[:1].upper() + p[1:] for p in parts) + r.version[:1].upper() + r.version[1:]


def _patch_types(r: Resource) -> tuple[str, ...]:
    """Built-in groups (core, dotless like ``apps``, or ``*.k8s.io``) take strategic merge
    patches; custom groups (like CRDs: devices, node groups) only JSON and merge patches."""
    strategic = not r.group or "." not in r.group or r.group.endswith(".k8s.io")
    return PATCH_TYPES if strategic else PATCH_TYPES[:2]


def review_items(reviews: list[Resource] | None = None) -> list[PathItem]:
    """Create-only paths: the access and identity reviews, and ``serviceaccounts/token``."""
    out: list[PathItem] = []
    for r in reviews if reviews is not None else list(REVIEWS.values()):
        obj = resource_definition(r)
        if obj is None:
            continue
        gv = f"apis/{r.group}/{r.version}"
        ns = [Param("namespace", "path", "object name and auth scope, such as for teams and projects", required=True)] if r.namespaced else []
        coll = f"/{gv}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"/{gv}/{r.plural}"
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        op = Operation("post", "post", f"create{_group_id(r)}{'Namespaced' if r.namespaced else ''}{r.kind}", f"create a {r.kind}", gvk, body=obj, response=obj)
        out.append(PathItem(coll, ns, [op], gv))
    tr = definition_name("authentication.k8s.io", "v1", "TokenRequest")
    if tr is not None and (reviews is None or reviews):
        sa = SERVICEACCOUNTS
        params = [Param("name", "path", "name of the TokenRequest", required=True), Param("namespace", "path", "object name and auth scope, such as for teams and projects", required=True)]
        gvk = {"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}
        op = Operation("post", "post", "createCoreV1NamespacedServiceAccountToken", f"create token of a {sa.kind}", gvk, body=tr, response=tr)
        out.append(PathItem(f"/api/v1/namespaces/{{namespace}}/{sa.plural}/{{name}}/token", params, [op], "api/v1"))
    return out


def path_items(resources: list[Resource] | None = None) -> list[PathItem]:
    """The API's paths, for every resource with a schema (and, for the full API, the reviews)."""
    out: list[PathItem] = [] if resources is not None else review_items()
    every = served() + [v.resource for v in VIEWS.values()]  # and the device views: v1alpha2 devices, DeviceStatus
    for r in resources if resources is not None else every:
        obj = resource_definition(r)
        lst = definition_name(r.group, r.version, r.list_kind)
        if obj is None:
            continue
        gv = f"apis/{r.group}/{r.version}" if r.group else "api/v1"
        base = f"/{gv}"
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        gid = _group_id(r)
        scope = "Namespaced" if r.namespaced else ""
        ns = [Param("namespace", "path", "object name and auth scope, such as for teams and projects", required=True)] if r.namespaced else []
        name = Param("name", "path", f"name of the {r.kind}", required=True)
        coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        item = coll + "/{name}"
        create_body = [_FIELD_VALIDATION]
        out.append(
            PathItem(
                coll,
                ns,
                [
                    Operation("get", "list", f"list{gid}{scope}{r.kind}", f"list or watch objects of kind {r.kind}", gvk, response=lst, params=list(_LIST_PARAMS)),
                    Operation("post", "post", f"create{gid}{scope}{r.kind}", f"create a {r.kind}", gvk, body=obj, response=obj, params=list(create_body)),
                ],
                gv,
            )
        )
        if r.namespaced:
            out.append(
                PathItem(
                    f"{base}/{r.plural}",
                    [],
                    [Operation("get", "list", f"list{gid}{r.kind}ForAllNamespaces", f"list or watch objects of kind {r.kind}", gvk, response=lst, params=list(_LIST_PARAMS))],
                    gv,
                )
            )
        out.append(
            PathItem(
                item,
                [name, *ns],
                [
                    Operation("get", "get", f"read{gid}{scope}{r.kind}", f"read the specified {r.kind}", gvk, response=obj),
                    Operation("put", "put", f"replace{gid}{scope}{r.kind}", f"replace the specified {r.kind}", gvk, body=obj, response=obj, params=[_FIELD_VALIDATION]),
                    Operation(
                        "patch",
                        "patch",
                        f"patch{gid}{scope}{r.kind}",
                        f"partially update the specified {r.kind}",
                        gvk,
                        body=META + "Patch",
                        response=obj,
                        params=[_FIELD_VALIDATION],
                        consumes=_patch_types(r),
                    ),
                    Operation("delete", "delete", f"delete{gid}{scope}{r.kind}", f"delete a {r.kind}", gvk, body=META + "DeleteOptions", response=obj, params=list(_DELETE_PARAMS)),
                ],
                gv,
            )
        )
        if r.plural in STATUS_SUBRESOURCE:
            out.append(
                PathItem(
                    item + "/status",
                    [name, *ns],
                    [
                        Operation("get", "get", f"read{gid}{scope}{r.kind}Status", f"read status of the specified {r.kind}", gvk, response=obj),
                        Operation("put", "put", f"replace{gid}{scope}{r.kind}Status", f"replace status of the specified {r.kind}", gvk, body=obj, response=obj, params=[_FIELD_VALIDATION]),
                        Operation(
                            "patch",
                            "patch",
                            f"patch{gid}{scope}{r.kind}Status",
                            f"partially update status of the specified {r.kind}",
                            gvk,
                            body=META + "Patch",
                            response=obj,
                            params=[_FIELD_VALIDATION],
                            consumes=_patch_types(r),
                        ),
                    ],
                    gv,
                )
            )
        if r.plural in SCALE_SUBRESOURCE:
            scale = "io.k8s.api.autoscaling.v1.Scale"
            sgvk = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
            out.append(
                PathItem(
                    item + "/scale",
                    [name, *ns],
                    [
                        Operation("get", "get", f"read{gid}{scope}{r.kind}Scale", f"read scale of the specified {r.kind}", sgvk, response=scale),
                        Operation("put", "put", f"replace{gid}{scope}{r.kind}Scale", f"replace scale of the specified {r.kind}", sgvk, body=scale, response=scale, params=[_FIELD_VALIDATION]),
                        Operation(
                            "patch",
                            "patch",
                            f"patch{gid}{scope}{r.kind}Scale",
                            f"partially update scale of the specified {r.kind}",
                            sgvk,
                            body=META + "Patch",
                            response=scale,
                            params=[_FIELD_VALIDATION],
                            consumes=PATCH_TYPES,
                        ),
                    ],
                    gv,
                )
            )
        if r.plural == "pods" and not r.group:
            out.append(
                PathItem(
                    item + "/log",
                    [name, *ns],
                    [Operation("get", "connect", f"read{gid}{scope}PodLog", "read log of the specified Pod", {"group": "", "version": "v1", "kind": "Pod"}, params=list(_LOG_PARAMS))],
                    gv,
                )
            )
            for sub, kind, body_def, what in (
                ("binding", "Binding", "io.k8s.api.core.v1.Binding", "binding of a Pod to a node (the scheduler's)"),
                ("eviction", "Eviction", "io.k8s.api.policy.v1.Eviction", "eviction of a Pod, honouring its PodDisruptionBudgets"),
            ):
                if body_def not in definitions():
                    continue
                gvk_sub = {"group": "policy" if kind == "Eviction" else "", "version": "v1", "kind": kind}
                out.append(
                    PathItem(
                        f"{item}/{sub}",
                        [name, *ns],
                        [Operation("post", "post", f"create{gid}{scope}Pod{kind}", f"create {what}", gvk_sub, body=body_def, response=body_def, params=[_FIELD_VALIDATION])],
                        gv,
                    )
                )
    return out


# -- swagger 2.0 -----------------------------------------------------------------------


def _v2_param(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.location, "description": p.description, "type": p.type, "uniqueItems": True}
    if p.required:
        out["required"] = True
    return out


def _v2_operation(op: Operation) -> dict[str, Any]:
    params = [_v2_param(p) for p in op.params]
    if op.body:
        params.insert(0, {"name": "body", "in": "body", "required": op.method != "delete", "schema": {"$ref": f"#/definitions/{op.body}"}})
    responses: dict[str, Any] = {"401": {"description": "Unauthorized"}}
    if op.response:
        responses["200"] = {"description": "OK", "schema": {"$ref": f"#/definitions/{op.response}"}}
        if op.method == "post":
            responses["201"] = {"description": "Created", "schema": {"$ref": f"#/definitions/{op.response}"}}
    else:
        responses["200"] = {"description": "OK", "schema": {"type": "string"}}
    out: dict[str, Any] = {
        "description": op.description,
        "operationId": op.operation_id,
        "consumes": list(op.consumes) if op.body else ["*/*"],
        "produces": ["application/json", "application/yaml"] if op.response else ["text/plain"],
        "schemes": ["https"],
        "parameters": params,
        "responses": responses,
        "x-kubernetes-action": op.action,
    }
    if op.gvk is not None:
        out["x-kubernetes-group-version-kind"] = op.gvk
    return out


@functools.cache
def v2_document(version: str = "v1.30.0") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for pi in path_items():
        entry: dict[str, Any] = {op.method: _v2_operation(op) for op in pi.operations}
        if pi.params:
            entry["parameters"] = [_v2_param(p) for p in pi.params]
        paths[pi.path] = entry
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": version},
        "paths": paths,
        "definitions": definitions(),
    }


# -- OpenAPI 3.0 -----------------------------------------------------------------------


def _refs(x: Any) -> set[str]:
    if isinstance(x, dict):
        out = {x["$ref"].rsplit("/", 1)[1]} if isinstance(x.get("$ref"), str) else set()
        for v in x.values():
            out |= _refs(v)
        return out
    if isinstance(x, list):
        return set().union(*(_refs(v) for v in x)) if x else set()
    return set()


def _closure(names: set[str]) -> list[str]:
    defs = definitions()
    seen: set[str] = set()
    stack = list(names)
    while stack:
        n = stack.pop()
        if n in seen or n not in defs:
            continue
        seen.add(n)
        stack.extend(_refs(defs[n]))
    return sorted(seen)


def v3_schema(s: Any) -> Any:
    """A swagger schema in OpenAPI 3 form: refs into ``components``; a ref with siblings
    (a description) wrapped in ``allOf``, as the Kubernetes API server publishes them."""
    if isinstance(s, list):
        return [v3_schema(x) for x in s]
    if not isinstance(s, dict):
        return s
    if isinstance(s.get("$ref"), str):
        ref = {"$ref": "#/components/schemas/" + s["$ref"].rsplit("/", 1)[1]}
        rest = {k: v3_schema(v) for k, v in s.items() if k != "$ref"}
        return {"allOf": [ref], **rest} if rest else ref
    out: dict[str, Any] = {}
    for k, v in s.items():
        if k == "properties" and isinstance(v, dict):
            out[k] = {pk: v3_schema(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = v3_schema(v)
        else:
            out[k] = v
    return out


def _v3_param(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.location, "description": p.description, "schema": {"type": p.type, "uniqueItems": True}}
    if p.required:
        out["required"] = True
    return out


def _content(ref: str, types: tuple[str, ...]) -> dict[str, Any]:
    return {t: {"schema": {"$ref": f"#/components/schemas/{ref}"}} for t in types}


def _v3_operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": op.description,
        "operationId": op.operation_id,
        "parameters": [_v3_param(p) for p in op.params],
        "x-kubernetes-action": op.action,
    }
    if op.body:
        out["requestBody"] = {"content": _content(op.body, op.consumes), "required": op.method != "delete"}
    if op.response:
        out["responses"] = {"200": {"description": "OK", "content": _content(op.response, ("application/json", "application/yaml"))}}
        if op.method == "post":
            out["responses"]["201"] = {"description": "Created", "content": _content(op.response, ("application/json", "application/yaml"))}
    else:
        out["responses"] = {"200": {"description": "OK", "content": {"*/*": {"schema": {"type": "string"}}}}}
    if op.gvk is not None:
        out["x-kubernetes-group-version-kind"] = op.gvk
    return out


@functools.cache
def _v3_documents() -> dict[str, bytes]:
    by_gv: dict[str, list[PathItem]] = {}
    for pi in path_items():
        by_gv.setdefault(pi.group_version, []).append(pi)
    docs: dict[str, bytes] = {}
    for gv, items in by_gv.items():
        used: set[str] = set()
        paths: dict[str, Any] = {}
        for pi in items:
            entry: dict[str, Any] = {op.method: _v3_operation(op) for op in pi.operations}
            if pi.params:
                entry["parameters"] = [_v3_param(p) for p in pi.params]
            paths[pi.path] = entry
            for op in pi.operations:
                used |= {n for n in (op.body, op.response) if n}
        used.add(META + "Status")
        defs = definitions()
        doc = {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.30.0"},
            "paths": paths,
            "components": {"schemas": {n: v3_schema(defs[n]) for n in _closure(used)}},
        }
        docs[gv] = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    return docs


def v3_hash(gv: str) -> str | None:
    doc = _v3_documents().get(gv)
    return None if doc is None else hashlib.sha512(doc).hexdigest().upper()[:128]


def v3_root() -> dict[str, Any]:
    """``GET /openapi/v3``: where each group-version's document is."""
    return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={v3_hash(gv)}"} for gv in sorted(_v3_documents())}}


def v3_document(gv: str) -> bytes | None:
    """``GET /openapi/v3/<gv>``: that group-version's document (JSON), or None."""
    return _v3_documents().get(gv)
