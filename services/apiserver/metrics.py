"""``metrics.k8s.io/v1beta1`` for ``kubectl top node|pod [--containers]``.

Served from the metrics bucket, where cloudhub keeps each node's latest usage report
(``services/edged/metrics.py`` makes them from cgroups and /proc). NodeMetrics and
PodMetrics read as metrics-server's: CPU in nanocores (``123456n``), memory in KiB
(``2048Ki``), the report's ``timestamp`` and ``window``. A node that is offline keeps being
served with its last report (its ``timestamp`` says how old it is).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus import names
from edgebus.bus import KV, BusError
from edgebus.envelope import unpack
from edgebus.errors import NotFound
from edgebus.objects import NODES, PODS
from edgebus.objects.resources import METRICS_GROUP, now
from edgebus.objectstore import ObjectStore
from edgebus.kubehttp import Routes

API_VERSION = f"{METRICS_GROUP}/v1beta1"
PREFIX = f"/apis/{API_VERSION}"


def _rfc3339(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def usage(cpu: Any, memory: Any) -> dict[str, str]:
    return {"cpu": f"{int(cpu or 0)}n", "memory": f"{int(memory or 0) // 1024}Ki"}


def node_metrics(report: dict[str, Any]) -> dict[str, Any] | None:
    node = report.get("node") or {}
    if node.get("cpu") is None or not node.get("name"):
        return None
    return {
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": {"name": node["name"], "creationTimestamp": now()},
        "timestamp": _rfc3339(int(report.get("time") or 0)),
        "window": f"{int(report.get('window') or 0)}s",
        "usage": usage(node.get("cpu"), node.get("memory")),
    }


def pod_metrics(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in report.get("pods") or []:
        if not isinstance(p, dict) or not p.get("name"):
            continue
        out.append(
            {
                "kind": "PodMetrics",
                "apiVersion": API_VERSION,
                "metadata": {"name": p["name"], "namespace": p.get("namespace") or "default", "creationTimestamp": now()},
                "timestamp": _rfc3339(int(report.get("time") or 0)),
                "window": f"{int(report.get('window') or 0)}s",
                "containers": [{"name": c.get("name"), "usage": usage(c.get("cpu"), c.get("memory"))} for c in p.get("containers") or [] if isinstance(c, dict)],
            }
        )
    return out


def add_routes(routes: Routes, store: ObjectStore) -> None:
    bucket = KV(store.bus, names.BUCKET_METRICS)

    async def reports() -> list[dict[str, Any]]:
        try:
            entries, _ = await bucket.list()
        except BusError:
            return []  # no node has reported yet
        return [unpack(e.value) for e in entries if e.value]

    async def labelled(resource: Any, ns: str | None, selector: str | None) -> set[str] | None:
        if not selector:
            return None
        items, _ = await store.list(resource, ns, label_selector=selector)
        return {o["metadata"]["name"] for o in items}

    def listing(kind: str, items: list[dict[str, Any]]) -> JSONResponse:
        return JSONResponse({"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items})

    async def nodes(request: Request) -> Response:
        wanted = await labelled(NODES, None, request.query_params.get("labelSelector"))
        items = [m for r in await reports() if (m := node_metrics(r)) is not None and (wanted is None or m["metadata"]["name"] in wanted)]
        return listing("NodeMetrics", sorted(items, key=lambda m: m["metadata"]["name"]))

    async def node(request: Request) -> Response:
        name = request.path_params["name"]
        for r in await reports():
            m = node_metrics(r)
            if m is not None and m["metadata"]["name"] == name:
                return JSONResponse(m)
        raise NotFound(f'nodemetrics.metrics.k8s.io "{name}" not found', details={"name": name, "group": METRICS_GROUP, "kind": "nodes"})

    async def pods(request: Request) -> Response:
        ns = request.path_params.get("namespace")
        wanted = await labelled(PODS, ns, request.query_params.get("labelSelector"))
        items = [m for r in await reports() for m in pod_metrics(r) if (ns is None or m["metadata"]["namespace"] == ns) and (wanted is None or m["metadata"]["name"] in wanted)]
        return listing("PodMetrics", sorted(items, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"])))

    async def pod(request: Request) -> Response:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        for r in await reports():
            for m in pod_metrics(r):
                if m["metadata"]["namespace"] == ns and m["metadata"]["name"] == name:
                    return JSONResponse(m)
        raise NotFound(f'podmetrics.metrics.k8s.io "{name}" not found', details={"name": name, "group": METRICS_GROUP, "kind": "pods"})

    routes.add(f"{PREFIX}/nodes", nodes, ["GET"])
    routes.add(f"{PREFIX}/nodes/{{name}}", node, ["GET"])
    routes.add(f"{PREFIX}/pods", pods, ["GET"])
    routes.add(f"{PREFIX}/namespaces/{{namespace}}/pods", pods, ["GET"])
    routes.add(f"{PREFIX}/namespaces/{{namespace}}/pods/{{name}}", pod, ["GET"])
