"""What the console's pages show, computed from API objects (pure: no I/O, no templates).

Each function takes the objects the page's feeds hold and the current time, and returns
plain rows the templates print.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgebus import names
from edgebus.objects.devices import Prop, canonical, device_model_name, model_props
from edgebus.objects.resources import parse_time

#: labels a fleet is grouped by, in order of preference, per grouping
GROUP_LABELS: dict[str, tuple[str, ...]] = {
    "site": ("edgebus.io/site", "site", "topology.kubernetes.io/zone", "topology.kubernetes.io/region"),
    "nodegroup": ("apps.kubeedge.io/belonging-to", "edgebus.io/node-group"),
}
UNGROUPED = "(none)"
#: the Node annotation of the node's outbox backlog (cloudhub writes it from edgehub's reports)
OUTBOX_BACKLOG = names.ANN_OUTBOX_BACKLOG


def age(since: dt.datetime | None, now: dt.datetime) -> str:
    """``kubectl``'s short age: 42s, 7m, 3h, 12d ("" when unknown)."""
    if since is None:
        return ""
    s = max(0, int((now - since).total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def _cond(obj: Mapping[str, Any], ctype: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return {}


# -- the fleet ------------------------------------------------------------------------------
@dataclass
class Backlog:
    """A node's outbox backlog (messages stored at the edge, not yet in the cloud), from the
    Node annotation edgehub's reports keep up to date; the last one stays while the node is
    offline (``reported``: how long ago)."""

    messages: int
    bytes: int
    oldest: str  # age of the oldest message not yet forwarded
    reported: str

    @property
    def text(self) -> str:
        if not self.messages:
            return "0"
        return f"{self.messages:,} msgs · {human_bytes(self.bytes)} · oldest {self.oldest}"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def backlog_of(node: Mapping[str, Any], now: dt.datetime) -> Backlog | None:
    raw = (_meta(node).get("annotations") or {}).get(OUTBOX_BACKLOG)
    try:
        b = json.loads(raw) if raw else None
        if not isinstance(b, dict):
            return None
        secs = float(b.get("oldestSeconds") or 0)
        return Backlog(int(b.get("messages") or 0), int(b.get("bytes") or 0), age(now - dt.timedelta(seconds=secs), now), age(parse_time(b.get("reportedAt")), now))
    except (ValueError, TypeError, OverflowError):
        return None


@dataclass
class NodeRow:
    name: str
    ready: str  # "True", "False", "Unknown"
    reason: str
    since: str  # how long in this Ready state (the link is up while Ready)
    heartbeat: str  # age of the last heartbeat
    group: str
    pods: int
    pods_running: int
    devices: int
    devices_online: int
    address: str
    version: str
    problems: list[str] = field(default_factory=list)  # other conditions that are True (pressure...)
    #: the outbox backlog as the node last reported it ("" before its first report)
    backlog: Backlog | None = None

    @property
    def link(self) -> str:
        return "up" if self.ready == "True" else "down"


def group_of(node: Mapping[str, Any], grouping: str) -> str:
    labels = _meta(node).get("labels") or {}
    for key in GROUP_LABELS.get(grouping, ()):
        if labels.get(key):
            return str(labels[key])
    return UNGROUPED


def node_row(node: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], devices: Iterable[Mapping[str, Any]], now: dt.datetime, grouping: str = "site") -> NodeRow:
    ready = _cond(node, "Ready")
    st = node.get("status") or {}
    addr = next((a.get("address", "") for a in st.get("addresses") or [] if isinstance(a, dict) and a.get("type") == "InternalIP"), "")
    pods = list(pods)
    devices = list(devices)
    problems = [str(c.get("type")) for c in st.get("conditions") or [] if isinstance(c, dict) and c.get("type") != "Ready" and c.get("status") == "True"]
    return NodeRow(
        name=str(_meta(node).get("name", "")),
        ready=str(ready.get("status") or "Unknown"),
        reason=str(ready.get("reason") or ""),
        since=age(parse_time(ready.get("lastTransitionTime")), now),
        heartbeat=age(parse_time(ready.get("lastHeartbeatTime")), now),
        group=group_of(node, grouping),
        pods=len(pods),
        pods_running=sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running"),
        devices=len(devices),
        devices_online=sum(1 for d in devices if (d.get("status") or {}).get("state") == "online"),
        address=str(addr),
        version=str((st.get("nodeInfo") or {}).get("kubeletVersion") or ""),
        problems=problems,
        backlog=backlog_of(node, now),
    )


def by_node(objs: Iterable[Mapping[str, Any]], path: str = "nodeName") -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for o in objs:
        n = (o.get("spec") or {}).get(path)
        if n:
            out.setdefault(str(n), []).append(o)
    return out


def matches(row: NodeRow, node: Mapping[str, Any], query: str, status: str) -> bool:
    """The fleet's filter: ``status`` ready / notready / all, and every word of ``query`` in
    the node's name, group, address, labels (``key=value``) or problems."""
    if status == "ready" and row.ready != "True":
        return False
    if status == "notready" and row.ready == "True":
        return False
    hay = " ".join([row.name, row.group, row.address, *row.problems, *(f"{k}={v}" for k, v in (_meta(node).get("labels") or {}).items())]).lower()
    return all(w in hay for w in query.lower().split())


@dataclass
class Fleet:
    groups: list[tuple[str, list[NodeRow]]]
    total: int
    shown: int
    ready: int
    not_ready: int


def fleet(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], devices: Iterable[Mapping[str, Any]], now: dt.datetime, *, query: str = "", status: str = "all", grouping: str = "site") -> Fleet:
    pods_of, devs_of = by_node(pods), by_node(devices)
    rows = [(node_row(n, pods_of.get(_meta(n).get("name", ""), []), devs_of.get(_meta(n).get("name", ""), []), now, grouping), n) for n in nodes]
    ready = sum(1 for r, _ in rows if r.ready == "True")
    shown = [r for r, n in rows if matches(r, n, query, status)]
    groups: dict[str, list[NodeRow]] = {}
    # NotReady first inside a group (what an operator looks for), then by name
    for r in sorted(shown, key=lambda r: (r.ready == "True", r.name)):
        groups.setdefault(r.group, []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] == UNGROUPED, kv[0]))
    return Fleet(groups=ordered, total=len(rows), shown=len(shown), ready=ready, not_ready=len(rows) - ready)


# -- pods, events ---------------------------------------------------------------------------
@dataclass
class PodRow:
    namespace: str
    name: str
    node: str
    phase: str
    ready: str
    restarts: int
    age: str
    terminating: bool


def pod_row(pod: Mapping[str, Any], now: dt.datetime) -> PodRow:
    st = pod.get("status") or {}
    cs = [c for c in st.get("containerStatuses") or [] if isinstance(c, dict)]
    want = len((pod.get("spec") or {}).get("containers") or []) or len(cs)
    m = _meta(pod)
    return PodRow(
        namespace=str(m.get("namespace", "")),
        name=str(m.get("name", "")),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        phase=str(st.get("phase") or "Pending"),
        ready=f"{sum(1 for c in cs if c.get('ready'))}/{want}",
        restarts=sum(int(c.get("restartCount") or 0) for c in cs),
        age=age(parse_time(m.get("creationTimestamp")), now),
        terminating=bool(m.get("deletionTimestamp")),
    )


@dataclass
class EventRow:
    time: str
    age: str
    type: str
    reason: str
    object: str
    message: str
    count: int


def _event_time(ev: Mapping[str, Any]) -> str:
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or (ev.get("series") or {}).get("lastObservedTime") or ev.get("firstTimestamp") or _meta(ev).get("creationTimestamp") or "")


def event_rows(events: Iterable[Mapping[str, Any]], now: dt.datetime, *, limit: int = 100, involving: set[tuple[str, str]] | None = None) -> list[EventRow]:
    """The newest events first (at most ``limit``); with ``involving``, only those about one
    of these ``(kind, name)`` objects."""
    out = []
    for ev in events:
        io = ev.get("involvedObject") or {}
        if involving is not None and (str(io.get("kind")), str(io.get("name"))) not in involving:
            continue
        t = _event_time(ev)
        out.append(
            EventRow(
                time=t,
                age=age(parse_time(t), now),
                type=str(ev.get("type") or "Normal"),
                reason=str(ev.get("reason") or ""),
                object=f"{str(io.get('kind', '')).lower()}/{io.get('name', '')}",
                message=str(ev.get("message") or ev.get("note") or ""),
                count=int((ev.get("series") or {}).get("count") or ev.get("count") or 1),
            )
        )
    out.sort(key=lambda e: e.time, reverse=True)
    return out[:limit]


# -- devices --------------------------------------------------------------------------------
@dataclass
class PropRow:
    name: str
    type: str
    unit: str
    writable: bool
    desired: str
    reported: str
    observed_desired: str
    reported_at: str  # how long ago the value was reported
    in_sync: bool  # the device reports the value desired (or nothing is desired)
    spark: str  # SVG of the recent values ("" when fewer than two numbers)


@dataclass
class DeviceView:
    namespace: str
    name: str
    node: str
    model: str
    state: str
    last_online: str
    props: list[PropRow]


def desired_values(device: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for p in (device.get("spec") or {}).get("properties") or []:
        if isinstance(p, dict) and isinstance(p.get("desired"), dict) and p["desired"].get("value") is not None:
            out[str(p.get("name"))] = str(p["desired"]["value"])
    return out


def twins(device: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(t.get("propertyName")): t for t in (device.get("status") or {}).get("twins") or [] if isinstance(t, dict) and t.get("propertyName")}


def reported_values(device: Mapping[str, Any]) -> dict[str, str]:
    return {k: str((t.get("reported") or {}).get("value")) for k, t in twins(device).items() if (t.get("reported") or {}).get("value") is not None}


def _same(ptype: str, a: str, b: str) -> bool:
    try:
        return canonical(ptype, a) == canonical(ptype, b)
    except ValueError:
        return a == b


def stamp_time(ms: Any) -> dt.datetime | None:
    """A twin's ``metadata.timestamp`` (epoch milliseconds, as KubeEdge) as a time."""
    try:
        return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def device_view(device: Mapping[str, Any], model: Mapping[str, Any] | None, history: PropertyHistory | None = None, now: dt.datetime | None = None) -> DeviceView:
    m = _meta(device)
    ns, name = str(m.get("namespace", "default")), str(m.get("name", ""))
    props = model_props(dict(model) if model else None)
    desired = desired_values(device)
    tw = twins(device)
    names = list(props) + [p for p in [*desired, *tw] if p not in props]
    rows = []
    for pname in dict.fromkeys(names):
        prop = props.get(pname) or Prop(pname, "STRING", "ReadWrite", None, None)
        t = tw.get(pname) or {}
        rep = (t.get("reported") or {}).get("value")
        want = desired.get(pname)
        rows.append(
            PropRow(
                name=pname,
                type=prop.type,
                unit=prop.unit,
                writable=prop.writable,
                desired="" if want is None else want,
                reported="" if rep is None else str(rep),
                observed_desired=str((t.get("observedDesired") or {}).get("value") or ""),
                reported_at=age(stamp_time(((t.get("reported") or {}).get("metadata") or {}).get("timestamp")), now or dt.datetime.now(dt.UTC)),
                in_sync=want is None or (rep is not None and _same(prop.type, want, str(rep))),
                spark=sparkline(history.values(ns, name, pname)) if history is not None else "",
            )
        )
    st = device.get("status") or {}
    return DeviceView(
        namespace=ns,
        name=name,
        node=str((device.get("spec") or {}).get("nodeName") or ""),
        model=device_model_name(dict(device)) or "",
        state=str(st.get("state") or "unknown"),
        last_online=str(st.get("lastOnlineTime") or ""),
        props=rows,
    )


def with_desired(device: Mapping[str, Any], prop: str, value: str) -> dict[str, Any]:
    """The device with ``value`` as the desired value of ``prop`` (added if not listed)."""
    out = copy.deepcopy(dict(device))
    props = out.setdefault("spec", {}).setdefault("properties", [])
    entry = next((p for p in props if isinstance(p, dict) and p.get("name") == prop), None)
    if entry is None:
        entry = {"name": prop}
        props.append(entry)
    entry["desired"] = {**(entry.get("desired") or {}), "value": value}
    return out


def numeric(ptype: str, value: str) -> float | None:
    """A property value as a number for the history chart (booleans as 0/1), else None."""
    v = value.strip().lower()
    if v in ("true", "false"):
        return 1.0 if v == "true" else 0.0
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


class PropertyHistory:
    """The last ``per_property`` reported values of each device property, remembered from
    the Device objects the console sees (bounded: at most ``max_devices`` devices, the least
    recently updated forgotten first)."""

    def __init__(self, per_property: int = 60, max_devices: int = 5000) -> None:
        self.per_property = per_property
        self.max_devices = max_devices
        self._data: dict[tuple[str, str], dict[str, deque[tuple[str, float]]]] = {}

    def record(self, device: Mapping[str, Any]) -> None:
        m = _meta(device)
        key = (str(m.get("namespace", "default")), str(m.get("name", "")))
        dev = self._data.pop(key, None) or {}
        self._data[key] = dev  # most recently updated last
        for pname, t in twins(device).items():
            rep = t.get("reported") or {}
            if rep.get("value") is None:
                continue
            v = numeric("", str(rep["value"]))
            if v is None:
                continue
            stamp = str((rep.get("metadata") or {}).get("timestamp") or "")
            q = dev.setdefault(pname, deque(maxlen=self.per_property))
            if q and q[-1][0] == stamp and stamp:
                continue  # the same report seen again (another watcher, a re-list)
            q.append((stamp, v))
        while len(self._data) > self.max_devices:
            self._data.pop(next(iter(self._data)))

    def values(self, namespace: str, name: str, prop: str) -> list[float]:
        return [v for _, v in (self._data.get((namespace, name)) or {}).get(prop, ())]

    def forget(self, namespace: str, name: str) -> None:
        self._data.pop((namespace, name), None)


@dataclass(frozen=True)
class LinkChange:
    time: str  # the Ready condition's lastTransitionTime
    ready: str
    reason: str


class LinkHistory:
    """The Ready transitions of each node the console has seen (its link history: cloudhub
    keeps a node Ready exactly while fresh heartbeats come over its link): the last
    ``per_node`` per node, at most ``max_nodes`` nodes (least recently changed forgotten)."""

    def __init__(self, per_node: int = 20, max_nodes: int = 10000) -> None:
        self.per_node = per_node
        self.max_nodes = max_nodes
        self._data: dict[str, deque[LinkChange]] = {}

    def record(self, node: Mapping[str, Any]) -> None:
        c = _cond(node, "Ready")
        if not c.get("lastTransitionTime"):
            return
        name = str(_meta(node).get("name", ""))
        ch = LinkChange(str(c["lastTransitionTime"]), str(c.get("status") or "Unknown"), str(c.get("reason") or ""))
        q = self._data.get(name)
        if q is not None and q and (q[-1].time, q[-1].ready) == (ch.time, ch.ready):
            return
        q = self._data.pop(name, None) or deque(maxlen=self.per_node)
        q.append(ch)
        self._data[name] = q
        while len(self._data) > self.max_nodes:
            self._data.pop(next(iter(self._data)))

    def changes(self, node: str) -> list[LinkChange]:
        """Newest first."""
        return list(reversed(self._data.get(node, ())))


def sparkline(values: list[float], width: int = 120, height: int = 24) -> str:
    """A tiny SVG line of ``values`` (oldest left), "" for fewer than two."""
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / (len(values) - 1)
    pts = " ".join(f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in enumerate(values))
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="last {len(values)} values, {lo:g} to {hi:g}"><polyline fill="none" stroke="currentColor" '
        f'stroke-width="1.5" points="{pts}"/></svg>'
    )


# -- workloads ------------------------------------------------------------------------------
@dataclass
class WorkloadRow:
    kind: str
    namespace: str
    name: str
    desired: int
    updated: int
    ready: int
    available: int
    progress: int  # percent of the desired replicas updated and ready
    state: str


def workload_row(obj: Mapping[str, Any], kind: str) -> WorkloadRow:
    st = obj.get("status") or {}
    m = _meta(obj)
    if kind == "DaemonSet":
        desired = int(st.get("desiredNumberScheduled") or 0)
        updated = int(st.get("updatedNumberScheduled") or 0)
        ready = int(st.get("numberReady") or 0)
        available = int(st.get("numberAvailable") or 0)
    else:
        desired = int((obj.get("spec") or {}).get("replicas", 1) if (obj.get("spec") or {}).get("replicas") is not None else 1)
        updated = int(st.get("updatedReplicas") or 0)
        ready = int(st.get("readyReplicas") or 0)
        available = int(st.get("availableReplicas") or 0)
    done = min(updated, ready)
    progress = 100 if desired == 0 else min(100, round(100 * done / desired))
    stale = int(st.get("observedGeneration") or 0) < int(m.get("generation") or 0)
    if (obj.get("spec") or {}).get("paused"):
        state = "Paused"
    elif stale or done < desired or available < desired:
        state = "Progressing"
    else:
        state = "Complete"
    return WorkloadRow(kind, str(m.get("namespace", "")), str(m.get("name", "")), desired, updated, ready, available, progress, state)


def summary(objs: Iterable[Mapping[str, Any]], key: str) -> dict[str, int]:
    """Counts of a status field (``phase``, ``state``) over objects."""
    return dict(Counter(str((o.get("status") or {}).get(key) or "unknown") for o in objs))
