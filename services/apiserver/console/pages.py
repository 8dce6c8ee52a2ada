"""The console's pages: which feeds each one follows, and what its live fragment shows.

A :class:`Page` is a name (the SSE event its fragment arrives under), its feeds, and the
template of its live fragment with the context built from the feeds' objects. The full page
and every pushed update render the same fragment, so what a reload shows and what a push
shows never differ.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from services.apiserver.console import model
from services.apiserver.console.live import Feed, FeedState

NODES = "/api/v1/nodes"
PODS = "/api/v1/pods"
EVENTS = "/api/v1/events"
DEVICES = "/apis/devices.kubeedge.io/v1beta1/devices"
DEVICEMODELS = "/apis/devices.kubeedge.io/v1beta1/devicemodels"
DEPLOYMENTS = "/apis/apps/v1/deployments"
DAEMONSETS = "/apis/apps/v1/daemonsets"


def ns_path(group_path: str, namespace: str, plural: str) -> str:
    return f"{group_path}/namespaces/{quote(namespace, safe='')}/{plural}"


def named(name: str) -> tuple[tuple[str, str], ...]:
    return (("fieldSelector", f"metadata.name={name}"),)


Context = Callable[[dict[str, FeedState], dt.datetime], dict[str, Any]]


@dataclass
class Page:
    event: str
    title: str
    template: str  # the live fragment
    feeds: list[Feed]
    context: Context
    stream_url: str
    static: str = ""  # a part rendered once with the page, outside the live fragment (forms)


def _problems(states: dict[str, FeedState]) -> dict[str, str]:
    """Per feed, why it shows nothing (refused by RBAC, not served): shown on the page."""
    out = {}
    for k, s in states.items():
        if s.problem is not None:
            out[k] = "not served by this apiserver yet" if s.problem.code == 404 else str(s.problem)
    return out


def fleet_page(query: str, status: str, grouping: str) -> Page:
    def ctx(states: dict[str, FeedState], now: dt.datetime) -> dict[str, Any]:
        f = model.fleet(states["nodes"].items, states["pods"].items, states["devices"].items, now, query=query, status=status, grouping=grouping)
        return {"fleet": f, "problems": _problems(states), "query": query, "status": status, "grouping": grouping}

    q = f"?q={quote(query)}&status={quote(status)}&group={quote(grouping)}"
    return Page("fleet", "Fleet", "_fleet.html", [Feed("nodes", NODES), Feed("pods", PODS), Feed("devices", DEVICES)], ctx, f"/console/stream/fleet{q}", "fleet_filter.html")


def node_page(name: str, links: model.LinkHistory | None = None) -> Page:
    def ctx(states: dict[str, FeedState], now: dt.datetime) -> dict[str, Any]:
        nodes = states["nodes"].items
        pods = states["pods"].items
        devices = [d for d in states["devices"].items if (d.get("spec") or {}).get("nodeName") == name]
        node = nodes[0] if nodes else None
        row = model.node_row(node, pods, devices, now) if node else None
        involving = {("Node", name)} | {("Pod", (p.get("metadata") or {}).get("name", "")) for p in pods} | {("Device", (d.get("metadata") or {}).get("name", "")) for d in devices}
        conds = [c for c in ((node or {}).get("status") or {}).get("conditions") or [] if isinstance(c, dict)]
        return {
            "name": name,
            "node": node,
            "row": row,
            "conditions": conds,
            "pods": sorted((model.pod_row(p, now) for p in pods), key=lambda r: (r.namespace, r.name)),
            "devices": sorted((model.device_view(d, None, now=now) for d in devices), key=lambda d: (d.namespace, d.name)),
            "events": model.event_rows(states["events"].items, now, limit=50, involving=involving),
            "link_events": model.event_rows(states["events"].items, now, limit=20, involving={("Node", name)}),
            "link_changes": links.changes(name) if links is not None else [],
            "problems": _problems(states),
        }

    feeds = [
        Feed("nodes", NODES, named(name)),
        Feed("pods", PODS, (("fieldSelector", f"spec.nodeName={name}"),)),
        Feed("devices", DEVICES),
        Feed("events", EVENTS),
    ]
    return Page(f"node-{name}", f"Node {name}", "_node.html", feeds, ctx, f"/console/stream/nodes/{quote(name)}")


def devices_page() -> Page:
    def ctx(states: dict[str, FeedState], now: dt.datetime) -> dict[str, Any]:
        models = {((m.get("metadata") or {}).get("namespace"), (m.get("metadata") or {}).get("name")): m for m in states["models"].items}

        def model_of(d: dict[str, Any]) -> dict[str, Any] | None:
            return models.get(((d.get("metadata") or {}).get("namespace"), model.device_model_name(d)))

        views = sorted((model.device_view(d, model_of(d), now=now) for d in states["devices"].items), key=lambda d: (d.namespace, d.name))
        return {"devices": views, "problems": _problems(states), "states": model.summary(states["devices"].items, "state")}

    return Page("devices", "Devices", "_devices.html", [Feed("devices", DEVICES), Feed("models", DEVICEMODELS)], ctx, "/console/stream/devices")


def device_page(namespace: str, name: str, history: model.PropertyHistory, csrf: str) -> Page:
    def ctx(states: dict[str, FeedState], now: dt.datetime) -> dict[str, Any]:
        devs = states["device"].items
        models = states["models"].items
        dev = devs[0] if devs else None
        model_name = model.device_model_name(dev) if dev else None
        mod = next((m for m in models if (m.get("metadata") or {}).get("name") == model_name), None)
        return {
            "namespace": namespace,
            "name": name,
            "device": model.device_view(dev, mod, history, now) if dev else None,
            "events": model.event_rows(states["events"].items, now, limit=30, involving={("Device", name)}),
            "problems": _problems(states),
            "csrf": csrf,
        }

    base = "/apis/devices.kubeedge.io/v1beta1"
    feeds = [
        Feed("device", ns_path(base, namespace, "devices"), named(name)),
        Feed("models", ns_path(base, namespace, "devicemodels")),
        Feed("events", ns_path("/api/v1", namespace, "events")),
    ]
    return Page(f"device-{namespace}-{name}", f"Device {namespace}/{name}", "_device.html", feeds, ctx, f"/console/stream/devices/{quote(namespace)}/{quote(name)}", "_device_form.html")


def workloads_page() -> Page:
    def ctx(states: dict[str, FeedState], now: dt.datetime) -> dict[str, Any]:
        rows = [model.workload_row(o, "Deployment") for o in states["deployments"].items] + [model.workload_row(o, "DaemonSet") for o in states["daemonsets"].items]
        rows.sort(key=lambda r: (r.kind, r.namespace, r.name))
        return {"rows": rows, "problems": _problems(states)}

    return Page("workloads", "Workloads", "_workloads.html", [Feed("deployments", DEPLOYMENTS), Feed("daemonsets", DAEMONSETS)], ctx, "/console/stream/workloads")


def events_page() -> Page:
    def ctx(states: dict[str, FeedState], now: dt.datetime) -> dict[str, Any]:
        return {"events": model.event_rows(states["events"].items, now, limit=200), "problems": _problems(states)}

    return Page("events", "Events", "_events.html", [Feed("events", EVENTS)], ctx, "/console/stream/events")
