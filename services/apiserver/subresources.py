"""The pods' create-only subresources.

* ``POST /api/v1/namespaces/{ns}/pods/{name}/binding`` (core/v1 ``Binding``): what a
  scheduler calls to place a pod (:func:`edgebus.objects.binding.bind`).
* ``POST /api/v1/namespaces/{ns}/pods/{name}/eviction`` (policy/v1 ``Eviction``): a
  delete that honours the PodDisruptionBudget covering the pod
  (:func:`edgebus.objects.disruption.decide`): 429 ``TooManyRequests`` when the budget
  allows no disruption now (``kubectl drain`` retries every 5 s), else one disruption is
  taken from the budget's status (compare-and-set) and the pod is deleted gracefully.

Both answer ``201`` with a ``Status`` of ``Success``, as Kubernetes does.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound, TooManyRequests
from edgebus.objects import NODES, PODDISRUPTIONBUDGETS, PODS
from edgebus.objects import binding as B
from edgebus.objects import disruption as D
from edgebus.objectstore import ObjectStore
from services.apiserver import fields, logic, pods
from edgebus.objects.shapes import as_dict
from edgebus.kubehttp import Routes

log = logging.getLogger("edgebus.apiserver")

SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
#: attempts of an eviction whose budget keeps changing under it
EVICTION_ATTEMPTS = 10


def _body(raw: bytes, kinds: tuple[str, ...]) -> dict[str, Any]:
    obj = logic.parse_object(raw)
    if obj.get("kind") not in (None, "", *kinds):
        raise BadRequest(f"expected a {kinds[0]}, got kind {obj.get('kind')!r}")
    return obj


def _check_name(obj: dict[str, Any], name: str, namespace: str) -> None:
    md = as_dict(obj.get("metadata"))
    if md.get("name") not in (None, "", name):
        raise BadRequest(f"name in URL does not match name in {obj.get('kind') or 'body'}")
    if md.get("namespace") not in (None, "", namespace):
        raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")


async def bind(store: ObjectStore, namespace: str, name: str, binding: dict[str, Any]) -> None:
    """Bind the pod to the Binding's node (the node must exist)."""
    node = B.target_of(binding)
    try:
        await store.get(NODES, None, node)
    except NotFound:
        raise NotFound(f'nodes "{node}" not found', details={"name": node, "kind": "nodes"}) from None
    md = as_dict(binding.get("metadata"))
    uid = md.get("uid") if isinstance(md.get("uid"), str) else None
    ann = md.get("annotations") if isinstance(md.get("annotations"), dict) else None
    await store.mutate(PODS, namespace, name, lambda pod: B.bind(pod, node, uid=uid, annotations=ann))


async def evict(store: ObjectStore, namespace: str, name: str, eviction: dict[str, Any]) -> None:
    opts = eviction.get("deleteOptions") if isinstance(eviction.get("deleteOptions"), dict) else None
    if opts and opts.get("dryRun"):
        raise BadRequest("dryRun is not supported by this server: nothing was changed")
    rv, grace, uid = pods.delete_options(opts, {})
    for _ in range(EVICTION_ATTEMPTS):
        pod = await store.get(PODS, namespace, name)
        pdbs, _ = await store.list(PODDISRUPTIONBUDGETS, namespace)
        decision = D.decide(pod, pdbs)
        if not decision.delete:
            raise _refusal(decision)
        pdb = next((p for p in pdbs if D.covers(p, pod)), None) if decision.take else None
        if pdb is not None and name not in ((pdb.get("status") or {}).get("disruptedPods") or {}):
            pdb_name = pdb["metadata"]["name"]
            now = dt.datetime.now(dt.UTC)
            try:
                taken = await store.mutate(PODDISRUPTIONBUDGETS, namespace, pdb_name, lambda cur: _take(cur, pod, now), retries=1)
            except Conflict:
                continue  # the budget changed: decide again on its new status
            except _Again:
                continue
            if taken is None:
                continue
        try:
            await store.delete(PODS, namespace, name, resource_version=rv, grace_period_seconds=grace, uid=uid or pod["metadata"].get("uid"))
        except Conflict:
            if rv or uid:
                raise
            continue  # the pod changed between the decision and the delete: decide again
        log.info("evicted pod %s/%s", namespace, name)
        return
    raise TooManyRequests(D.EVICTION_REFUSED + " The disruption budget kept changing; try again.")


class _Again(Exception):
    pass


def _take(pdb: dict[str, Any], pod: dict[str, Any], now: dt.datetime) -> dict[str, Any] | None:
    decision = D.decide(pod, [pdb])
    if not decision.take:
        raise _Again()
    return D.take_disruption(pdb, pod["metadata"]["name"], now)


def _refusal(d: D.Decision) -> ApiError:
    details: dict[str, Any] = {"causes": list(d.causes)} if d.causes else {}
    if d.code == 429:
        return TooManyRequests(d.message, details=details)
    if d.code == 403:
        return Forbidden(d.message, details=details)
    return ApiError(d.message, details=details)


def add_routes(routes: Routes, store: ObjectStore) -> None:
    @routes.post("/api/v1/namespaces/{namespace}/pods/{name}/binding")
    async def pod_binding(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        fields.reject_dry_run(request)
        logic.check_path_namespace(namespace)
        logic.check_path_name(PODS, name)
        body = _body(await fields.read_body(request), ("Binding",))
        _check_name(body, name, namespace)
        await bind(store, namespace, name, body)
        return JSONResponse(SUCCESS, status_code=201)

    @routes.post("/api/v1/namespaces/{namespace}/pods/{name}/eviction")
    async def pod_eviction(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        fields.reject_dry_run(request)
        logic.check_path_namespace(namespace)
        logic.check_path_name(PODS, name)
        body = _body(await fields.read_body(request), ("Eviction", "DeleteOptions"))
        _check_name(body, name, namespace)
        await evict(store, namespace, name, body)
        return JSONResponse(SUCCESS, status_code=201)
