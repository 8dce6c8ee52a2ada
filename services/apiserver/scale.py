"""The ``scale`` subresource (``autoscaling/v1`` Scale) of Deployments, ReplicaSets and
StatefulSets, and the garbage-collection part of DeleteOptions.

* ``GET|PUT|PATCH /apis/apps/v1/namespaces/{ns}/{plural}/{name}/scale``: the object's
  ``spec.replicas``, ``status.replicas`` and its selector as a string (what ``kubectl
  scale`` reads and patches, and HorizontalPodAutoscalers use). A write changes only
  ``spec.replicas``, compare-and-set on the resourceVersion the Scale names (or the one just
  read, for a patch).
* ``propagationPolicy`` (``Foreground`` / ``Background`` / ``Orphan``, body or query) and
  the legacy ``orphanDependents`` of DeleteOptions: ``kubectl delete --cascade=...``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus.errors import BadRequest, Conflict, NotFound
from edgebus.objects import RESOURCES, Resource, labelselector
from edgebus.objects.checks import Causes
from edgebus.objectstore import PROPAGATION_POLICIES, SCALE_SUBRESOURCE, ObjectStore
from edgebus.kubehttp import Routes
from services.apiserver import fields, logic

PATCH_RETRIES = 5


def propagation_policy(opts: dict[str, Any] | None, query: dict[str, str]) -> str | None:
    """The deletion's propagation policy, from DeleteOptions or the query (None: default)."""
    opts = opts or {}
    p = opts.get("propagationPolicy") or query.get("propagationPolicy") or None
    orphan = opts.get("orphanDependents")
    if orphan is None and query.get("orphanDependents") not in (None, ""):
        orphan = logic.parse_bool(query.get("orphanDependents"))
    if p is not None and orphan is not None:
        raise BadRequest("orphanDependents and propagationPolicy cannot both be set")
    if orphan is not None:
        return "Orphan" if orphan else "Background"
    if p is not None and p not in PROPAGATION_POLICIES:
        raise BadRequest(f'propagationPolicy: Unsupported value: "{p}": supported values: "Foreground", "Background", "Orphan"')
    return p


def scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata") or {}
    keep = {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md}
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": keep,
        "spec": {"replicas": int(spec.get("replicas") or 0)},
        "status": {"replicas": int(status.get("replicas") or 0), "selector": labelselector.to_string(spec.get("selector"))},
    }


def _replicas(scale: Any, name: str) -> int:
    c = Causes()
    n = ((scale.get("spec") or {}) if isinstance(scale, dict) else {}).get("replicas")
    if n is None:
        n = 0
    if not isinstance(n, int) or isinstance(n, bool):
        c.type_error("spec.replicas", "an integer", n)
    elif n < 0:
        c.invalid("spec.replicas", n, "must be greater than or equal to 0")
    c.raise_if_any("Scale", name)
    return int(n)


def add_routes(routes: Routes, store: ObjectStore) -> None:
    base = "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/scale"

    def resource(request: Request) -> Resource:
        p = request.path_params
        r = RESOURCES.get(p["plural"])
        if r is None or r.plural not in SCALE_SUBRESOURCE or r.group != p["group"] or r.version != p["version"]:
            raise NotFound("the server could not find the requested resource")
        logic.check_path_namespace(p["namespace"])
        logic.check_path_name(r, p["name"])
        return r

    async def write(r: Resource, ns: str, name: str, obj: dict[str, Any], replicas: int, rv: str) -> dict[str, Any]:
        obj["spec"] = {**(obj.get("spec") or {}), "replicas": replicas}
        obj["metadata"]["resourceVersion"] = rv
        return scale_of(await store.update(r, obj, namespace=ns))

    async def get_scale(request: Request) -> Response:
        r = resource(request)
        p = request.path_params
        return JSONResponse(scale_of(await store.get(r, p["namespace"], p["name"])))

    async def put_scale(request: Request) -> Response:
        r = resource(request)
        p = request.path_params
        body, dups = fields.parse_body(await fields.read_body(request))
        fields.reject_dry_run(request)
        replicas = _replicas(body, p["name"])
        obj = await store.get(r, p["namespace"], p["name"])
        want = str((body.get("metadata") or {}).get("resourceVersion") or "") or obj["metadata"]["resourceVersion"]
        if want != obj["metadata"]["resourceVersion"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {r.plural}.{r.group} "{p["name"]}": the object has been modified; please apply your changes to the latest version and try again'
            )
        return JSONResponse(await write(r, p["namespace"], p["name"], obj, replicas, want))

    async def patch_scale(request: Request) -> Response:
        r = resource(request)
        p = request.path_params
        fields.reject_dry_run(request)
        body = await fields.read_body(request)
        for attempt in range(PATCH_RETRIES):
            obj = await store.get(r, p["namespace"], p["name"])
            current = scale_of(obj)
            new = logic.apply_patch(request.headers.get("content-type"), current, body)
            replicas = _replicas(new, p["name"])
            pinned = str((new.get("metadata") or {}).get("resourceVersion") or "")
            if pinned and pinned != current["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on {r.plural}.{r.group} "{p["name"]}": the object has been modified')
            try:
                return JSONResponse(await write(r, p["namespace"], p["name"], obj, replicas, current["metadata"]["resourceVersion"]))
            except Conflict:
                if pinned or attempt == PATCH_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    routes.add(base, get_scale, ["GET"])
    routes.add(base, put_scale, ["PUT"])
    routes.add(base, patch_scale, ["PATCH"])
