"""Pod routes beyond the generic object routes.

* ``GET /api/v1/namespaces/{ns}/pods/{name}/log`` - the container log, fetched from the
  pod's node over NATS (request/reply to that node's edged, through its leaf link), so
  ``kubectl logs [-c C] [--tail N] [--timestamps] [--since 5m] [-p] [-f]`` works. The
  apiserver never talks to edged otherwise: only this NATS request (``edgebus.podlogs``,
  which the node's metaserver shares).
* DeleteOptions: ``gracePeriodSeconds`` (body or query; 0 = remove at once, as
  ``kubectl delete --force --grace-period=0``) and ``preconditions.uid``.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from edgebus.edgedclient import EdgedClient
from edgebus.errors import BadRequest
from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore
from edgebus.objects.shapes import as_dict
from edgebus.podlogs import int_param, log_response
from edgebus.kubehttp import Routes

log = logging.getLogger("edgebus.apiserver")


def delete_options(opts: dict[str, Any] | None, query: dict[str, str]) -> tuple[str | None, int | None, str | None]:
    """(resourceVersion precondition, grace period seconds, uid precondition)."""
    opts = opts or {}
    pre = as_dict(opts.get("preconditions"))
    rv = str(pre["resourceVersion"]) if pre.get("resourceVersion") else None
    uid = str(pre["uid"]) if pre.get("uid") else None
    grace = int_param(opts.get("gracePeriodSeconds"), "gracePeriodSeconds")
    if grace is None:
        grace = int_param(query.get("gracePeriodSeconds"), "gracePeriodSeconds")
    return rv, grace, uid


def add_routes(routes: Routes, store: ObjectStore) -> None:
    @routes.get("/api/v1/namespaces/{namespace}/pods/{name}/log")
    async def pod_log(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        q = dict(request.query_params)
        pod = await store.get(PODS, namespace, name)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise BadRequest(f'pod "{name}" is not scheduled to a node yet')
        return await log_response(EdgedClient(store.bus, node, source="apiserver"), namespace, name, q)
