"""The columns users know from ``kubectl get``, for the CLI (and the API's Table output)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgebus.objects.resources import parse_time


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    get: Callable[[dict[str, Any]], str]
    wide: bool = False
    type: str = "string"
    description: str = ""


def age(ts: str | None, now: dt.datetime | None = None) -> str:
    t = parse_time(ts)
    if t is None:
        return "<unknown>"
    secs = int(((now or dt.datetime.now(dt.UTC)) - t).total_seconds())
    secs = max(secs, 0)
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        s = secs % 60
        return f"{mins}m{s}s" if s else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    if hours < 8:
        m = mins % 60
        return f"{hours}h{m}m" if m else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        h = hours % 24
        return f"{days}d{h}h" if h else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        d = days % 365
        return f"{days // 365}y{d}d" if d else f"{days // 365}y"
    return f"{days // 365}y"


def _md(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("metadata") or {}


def _name(o: dict[str, Any]) -> str:
    return str(_md(o).get("name", ""))


def _age(o: dict[str, Any]) -> str:
    return age(_md(o).get("creationTimestamp"))


def node_ready(node: dict[str, Any]) -> str:
    """``True``, ``False`` or ``Unknown`` (the Ready condition's status)."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status", "Unknown"))
    return "Unknown"


def node_status(node: dict[str, Any]) -> str:
    s = "Ready" if node_ready(node) == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        s += ",SchedulingDisabled"
    return s


def node_roles(node: dict[str, Any]) -> str:
    roles = sorted(
        k.split("/", 1)[1] for k in (_md(node).get("labels") or {}) if k.startswith("node-role.kubernetes.io/") and "/" in k
    )
    return ",".join(r for r in roles if r) or "<none>"


def _node_ip(node: dict[str, Any], kind: str) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == kind:
            return str(a.get("address", ""))
    return "<none>"


def pod_ready(pod: dict[str, Any]) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{total}"


def pod_status(pod: dict[str, Any]) -> str:
    if _md(pod).get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    inits = status.get("initContainerStatuses") or []
    total = len((pod.get("spec") or {}).get("initContainers") or [])
    for i, s in enumerate(inits):  # kubectl's rules: the first init container not done
        state = s.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term is not None and term.get("exitCode") == 0:
            continue
        if term is not None:
            return "Init:" + str(term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        if wait is not None and wait.get("reason") and wait["reason"] != "PodInitializing":
            return "Init:" + str(wait["reason"])
        return f"Init:{i}/{total}"
    for s in status.get("containerStatuses") or []:
        state = s.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state and state["terminated"].get("reason"):
            reason = state["terminated"]["reason"]
    return str(reason)


def pod_restarts(pod: dict[str, Any]) -> str:
    st = pod.get("status") or {}
    return str(sum(int(s.get("restartCount") or 0) for s in [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]))


def _readiness_gates(pod: dict[str, Any]) -> str:
    """``<ready>/<total>`` of the pod's readiness gates, ``<none>`` without any (as kubectl)."""
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or [] if isinstance(g, dict)]
    if not gates:
        return "<none>"
    true = {c.get("type") for c in (pod.get("status") or {}).get("conditions") or [] if isinstance(c, dict) and c.get("status") == "True"}
    return f"{sum(1 for g in gates if g in true)}/{len(gates)}"


def _data_count(o: dict[str, Any]) -> str:
    return str(len(o.get("data") or {}) + len(o.get("binaryData") or {}))


def device_twins(dev: dict[str, Any]) -> str:
    """The live (reported) values: ``temperature=21.5 setpoint=22 fan=false``."""
    parts = []
    for t in (dev.get("status") or {}).get("twins") or []:
        if not isinstance(t, dict):
            continue
        rep = (t.get("reported") or {}).get("value")
        if rep is None:
            continue
        parts.append(f"{t.get('propertyName')}={rep}")
    return " ".join(parts) or "<none>"


def device_desired(dev: dict[str, Any]) -> str:
    parts = []
    for p in (dev.get("spec") or {}).get("properties") or []:
        v = ((p or {}).get("desired") or {}).get("value") if isinstance(p, dict) else None
        if v not in (None, ""):
            parts.append(f"{p.get('name')}={v}")
    return " ".join(parts) or "<none>"


def _event_object(o: dict[str, Any]) -> str:
    io = o.get("involvedObject") or {}
    return f"{str(io.get('kind', '')).lower()}/{io.get('name', '')}"


def _event_source(o: dict[str, Any]) -> str:
    src = o.get("source") or {}
    comp = str(src.get("component") or o.get("reportingComponent") or "")
    return f"{comp}, {src['host']}" if src.get("host") else comp


def _int_or_na(v: Any) -> str:
    return "N/A" if v is None else str(v)


def _service_ports(svc: dict[str, Any]) -> str:
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        if isinstance(p, dict):
            node = f":{p['nodePort']}" if p.get("nodePort") else ""
            out.append(f"{p.get('port')}{node}/{p.get('protocol') or 'TCP'}")
    return ",".join(out) or "<none>"


def _selector(svc: dict[str, Any]) -> str:
    sel = (svc.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) if isinstance(sel, dict) and sel else "<none>"


def endpoints_summary(ep: dict[str, Any], limit: int = 3) -> str:
    """``ip:port,ip:port + N more...`` of the ready addresses, as ``kubectl get ep``."""
    items = []
    for s in ep.get("subsets") or []:
        if not isinstance(s, dict):
            continue
        ports = [p.get("port") for p in s.get("ports") or [] if isinstance(p, dict)] or [None]
        for a in s.get("addresses") or []:
            for port in ports:
                ip = a.get("ip") if isinstance(a, dict) else None
                items.append(f"{ip}:{port}" if port is not None else str(ip))
    if not items:
        return "<none>"
    more = f" + {len(items) - limit} more..." if len(items) > limit else ""
    return ",".join(items[:limit]) + more


def _created_at(o: dict[str, Any]) -> str:
    return str(_md(o).get("creationTimestamp") or "")


def _role_ref(o: dict[str, Any]) -> str:
    ref = o.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}" if isinstance(ref, dict) else ""


def _subjects(kind: str) -> Callable[[dict[str, Any]], str]:
    def get(o: dict[str, Any]) -> str:
        out = []
        for s in o.get("subjects") or []:
            if isinstance(s, dict) and s.get("kind") == kind:
                out.append(f"{s.get('namespace') or ''}/{s.get('name')}" if kind == "ServiceAccount" else str(s.get("name")))
        return ", ".join(out)

    return get


_BINDING_COLUMNS = [
    Column("NAME", _name),
    Column("ROLE", _role_ref),
    Column("AGE", _age),
    Column("USERS", _subjects("User"), wide=True),
    Column("GROUPS", _subjects("Group"), wide=True),
    Column("SERVICEACCOUNTS", _subjects("ServiceAccount"), wide=True),
]

COLUMNS: dict[str, list[Column]] = {
    "roles": [Column("NAME", _name), Column("CREATED AT", _created_at, type="date")],
    "clusterroles": [Column("NAME", _name), Column("CREATED AT", _created_at, type="date")],
    "rolebindings": _BINDING_COLUMNS,
    "clusterrolebindings": _BINDING_COLUMNS,
    "serviceaccounts": [Column("NAME", _name), Column("SECRETS", lambda o: str(len(o.get("secrets") or [])), type="integer"), Column("AGE", _age)],
    "services": [
        Column("NAME", _name),
        Column("TYPE", lambda o: str((o.get("spec") or {}).get("type") or "ClusterIP")),
        Column("CLUSTER-IP", lambda o: str((o.get("spec") or {}).get("clusterIP") or "<none>")),
        Column("EXTERNAL-IP", lambda o: ",".join((o.get("spec") or {}).get("externalIPs") or []) or "<none>"),
        Column("PORT(S)", _service_ports),
        Column("AGE", _age),
        Column("SELECTOR", _selector, wide=True),
    ],
    "endpoints": [Column("NAME", _name), Column("ENDPOINTS", endpoints_summary), Column("AGE", _age)],
    "devices": [
        Column("NAME", _name),
        Column("NODE", lambda o: str((o.get("spec") or {}).get("nodeName") or "<none>")),
        Column("MODEL", lambda o: str(((o.get("spec") or {}).get("deviceModelRef") or {}).get("name") or "")),
        Column("STATE", lambda o: str((o.get("status") or {}).get("state") or "<unknown>")),
        Column("VALUES", device_twins),
        Column("AGE", _age),
        Column("DESIRED", device_desired, wide=True),
        Column("PROTOCOL", lambda o: str(((o.get("spec") or {}).get("protocol") or {}).get("protocolName") or ""), wide=True),
    ],
    "devicemodels": [
        Column("NAME", _name),
        Column("PROTOCOL", lambda o: str((o.get("spec") or {}).get("protocol") or "")),
        Column("PROPERTIES", lambda o: ",".join(str(p.get("name")) for p in (o.get("spec") or {}).get("properties") or [] if isinstance(p, dict))),
        Column("AGE", _age),
    ],
    "events": [
        Column("LAST SEEN", lambda o: age(o.get("lastTimestamp") or o.get("firstTimestamp") or _md(o).get("creationTimestamp"))),
        Column("TYPE", lambda o: str(o.get("type") or "Normal")),
        Column("REASON", lambda o: str(o.get("reason") or "")),
        Column("OBJECT", _event_object),
        Column("SUBOBJECT", lambda o: str((o.get("involvedObject") or {}).get("fieldPath") or ""), wide=True),
        Column("SOURCE", _event_source, wide=True),
        Column("MESSAGE", lambda o: str(o.get("message") or "")),
        Column("FIRST SEEN", lambda o: age(o.get("firstTimestamp") or _md(o).get("creationTimestamp")), wide=True),
        Column("COUNT", lambda o: str(o.get("count") or 1), wide=True, type="integer"),
        Column("NAME", _name, wide=True),
    ],
    "runtimeclasses": [
        Column("NAME", _name),
        Column("HANDLER", lambda o: str(o.get("handler") or "")),
        Column("AGE", _age),
    ],
    "poddisruptionbudgets": [
        Column("NAME", _name),
        Column("MIN AVAILABLE", lambda o: _int_or_na((o.get("spec") or {}).get("minAvailable"))),
        Column("MAX UNAVAILABLE", lambda o: _int_or_na((o.get("spec") or {}).get("maxUnavailable"))),
        Column("ALLOWED DISRUPTIONS", lambda o: str((o.get("status") or {}).get("disruptionsAllowed") or 0), type="integer"),
        Column("AGE", _age),
    ],
    "nodes": [
        Column("NAME", _name),
        Column("STATUS", node_status),
        Column("ROLES", node_roles),
        Column("AGE", _age),
        Column("VERSION", lambda o: str(((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""))),
        Column("INTERNAL-IP", lambda o: _node_ip(o, "InternalIP"), wide=True),
        Column("EXTERNAL-IP", lambda o: _node_ip(o, "ExternalIP"), wide=True),
        Column("OS-IMAGE", lambda o: str(((o.get("status") or {}).get("nodeInfo") or {}).get("osImage", "<unknown>")), wide=True),
        Column("KERNEL-VERSION", lambda o: str(((o.get("status") or {}).get("nodeInfo") or {}).get("kernelVersion", "<unknown>")), wide=True),
        Column("CONTAINER-RUNTIME", lambda o: str(((o.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion", "<unknown>")), wide=True),
    ],
    "pods": [
        Column("NAME", _name),
        Column("READY", pod_ready),
        Column("STATUS", pod_status),
        Column("RESTARTS", pod_restarts, type="integer"),
        Column("AGE", _age),
        Column("IP", lambda o: str((o.get("status") or {}).get("podIP") or "<none>"), wide=True),
        Column("NODE", lambda o: str((o.get("spec") or {}).get("nodeName") or "<none>"), wide=True),
        Column("NOMINATED NODE", lambda o: str((o.get("status") or {}).get("nominatedNodeName") or "<none>"), wide=True),
        Column("READINESS GATES", _readiness_gates, wide=True),
    ],
    "configmaps": [Column("NAME", _name), Column("DATA", _data_count, type="integer"), Column("AGE", _age)],
    "secrets": [
        Column("NAME", _name),
        Column("TYPE", lambda o: str(o.get("type") or "Opaque")),
        Column("DATA", _data_count, type="integer"),
        Column("AGE", _age),
    ],
    "namespaces": [
        Column("NAME", _name),
        Column("STATUS", lambda o: str((o.get("status") or {}).get("phase") or "Active")),
        Column("AGE", _age),
    ],
}

DEFAULT_COLUMNS = [Column("NAME", _name), Column("AGE", _age)]


def _workload_columns() -> dict[str, list[Column]]:
    from edgebus.objects.workload_tables import COLUMNS as workload  # builds on this module

    return workload


def columns(resource: str, *, wide: bool = False) -> list[Column]:
    cols = COLUMNS.get(resource) or _workload_columns().get(resource) or DEFAULT_COLUMNS
    return [c for c in cols if wide or not c.wide]


def rows(resource: str, objs: list[dict[str, Any]], *, wide: bool = False, with_namespace: bool = False) -> tuple[list[str], list[list[str]]]:
    cols = columns(resource, wide=wide)
    headers = [c.name for c in cols]
    out = [[c.get(o) for c in cols] for o in objs]
    if with_namespace:
        headers = ["NAMESPACE", *headers]
        out = [[str(_md(o).get("namespace") or ""), *r] for o, r in zip(objs, out, strict=True)]
    return headers, out
