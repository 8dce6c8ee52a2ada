"""Recording Kubernetes ``Event`` objects: from cloud services (:class:`EventRecorder`),
and from edge nodes (:class:`EdgeEventRecorder`, through the node's outbox).

An :class:`EventRecorder` turns "this happened to that object" into a core/v1 ``Event``,
as client-go's recorder does: events with the same involved object, type, reason, message
and reporting component are one object whose ``count`` and ``lastTimestamp`` grow, so a
condition that repeats (a pod that keeps failing to schedule, a crash loop) never floods the
store. The name is derived from those fields, so two replicas recording the same event
update one object instead of creating two.

Recording never fails the caller: an event that cannot be written is logged and dropped
(events are informational, as in Kubernetes).

Edge nodes publish each occurrence into their outbox (kept while offline, forwarded to the
cloud exactly once) as ``{time, event}``; cloudhub merges it into the same kind of
aggregated object with :func:`merge_report`, applying an occurrence only if it is newer
than the last one the object counts (``edgebus.io/status-time``), so a redelivered message
never counts twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from typing import Any

from edgebus import names
from edgebus.bus import Bus, BusError
from edgebus.envelope import OP_INSERT, Envelope
from edgebus.errors import AlreadyExists, ApiError, Conflict, InvalidMessage, NotFound
from edgebus.objects import EVENTS
from edgebus.objects.resources import meta
from edgebus.objectstore import ObjectStore

log = logging.getLogger("edgebus.events")

NORMAL = "Normal"
WARNING = "Warning"
#: the edge time (ns) of the last occurrence an event object counts (edge reports)
REPORT_TIME = "edgebus.io/status-time"


def _ts(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def involved_object(obj: dict[str, Any], field_path: str = "") -> dict[str, Any]:
    """The ``involvedObject`` reference of an API object."""
    md = meta(obj)
    ref: dict[str, Any] = {"apiVersion": obj.get("apiVersion", "v1"), "kind": obj.get("kind", ""), "name": md.get("name", "")}
    for src, dst in (("namespace", "namespace"), ("uid", "uid"), ("resourceVersion", "resourceVersion")):
        if md.get(src):
            ref[dst] = md[src]
    if ref["kind"] == "Node":
        ref["uid"] = ref["name"]  # Kubernetes' convention: kubectl describe node looks events up by it
        ref.pop("resourceVersion", None)
    if field_path:
        ref["fieldPath"] = field_path
    return ref


def event_name(ref: dict[str, Any], type_: str, reason: str, message: str, component: str) -> str:
    """A stable name for one aggregated event: ``<object>.<16 hex>``."""
    h = hashlib.sha256("\x00".join([ref.get("uid", ""), ref.get("kind", ""), ref.get("name", ""), ref.get("fieldPath", ""), type_, reason, message, component]).encode()).hexdigest()[:16]
    base = ref.get("name", "") or "event"
    return f"{base[:200]}.{h}"


def new_event(
    ref: dict[str, Any], type_: str, reason: str, message: str, *, component: str, host: str = "", action: str = "", now: dt.datetime | None = None
) -> dict[str, Any]:
    t = now or dt.datetime.now(dt.UTC)
    ns = ref.get("namespace") or "default"
    ev: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(ref, type_, reason, message, component), "namespace": ns},
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component, **({"host": host} if host else {})},
        "reportingComponent": component,
        "reportingInstance": host or component,
        "firstTimestamp": _ts(t),
        "lastTimestamp": _ts(t),
        "eventTime": _micro(t),
        "count": 1,
    }
    if action:
        ev["action"] = action
    return ev


class EventRecorder:
    """Records events for one component (e.g. ``default-scheduler``, ``deployment-controller``)."""

    def __init__(self, store: ObjectStore, component: str, *, host: str = "") -> None:
        self.store = store
        self.component = component
        self.host = host

    async def record(self, obj: dict[str, Any], type_: str, reason: str, message: str, *, action: str = "", field_path: str = "") -> None:
        ref = involved_object(obj, field_path)
        ev = new_event(ref, type_, reason, message, component=self.component, host=self.host, action=action)
        try:
            await self.store.create(EVENTS, ev, namespace=ev["metadata"]["namespace"])
            return
        except AlreadyExists:
            pass
        except (ApiError, Exception) as exc:  # noqa: BLE001 - events are best effort
            log.warning("event %s/%s not recorded: %s", reason, ref.get("name"), exc)
            return
        now = _ts(dt.datetime.now(dt.UTC))

        def bump(cur: dict[str, Any]) -> dict[str, Any]:
            cur["count"] = int(cur.get("count") or 1) + 1
            cur["lastTimestamp"] = now
            cur["involvedObject"] = ref
            return cur

        try:
            await self.store.mutate(EVENTS, ev["metadata"]["namespace"], ev["metadata"]["name"], bump)
        except (NotFound, Conflict) as exc:
            log.debug("event %s/%s not aggregated: %s", reason, ref.get("name"), exc)
        except Exception as exc:  # noqa: BLE001
            log.warning("event %s/%s not aggregated: %s", reason, ref.get("name"), exc)


# -- edge events ---------------------------------------------------------------------------

#: the kinds an edge node reports events about, and their resources
EDGE_KINDS = {"Pod": "pods", "Node": "nodes"}


def _ts_ns(t_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_ns / 1e9, dt.UTC)


class EdgeEventRecorder:
    """Events of one edge service (``edged``, ``edgehub``) into the node's outbox
    (``edgebus.outbox.<node>.event.<resource>.<ns>.<name>``): stored locally, so they are
    kept while offline and reach the cloud exactly once after reconnect."""

    def __init__(self, bus: Bus, node: str, component: str) -> None:
        self.bus = bus
        self.node = node
        self.component = component

    async def record(self, ref: dict[str, Any], type_: str, reason: str, message: str, *, field_path: str = "", time_ns: int | None = None) -> bool:
        """``ref``: the involved object (``kind`` Pod or Node, ``name``, ``namespace``, ``uid``);
        ``time_ns``: when it happened (default: now)."""
        resource = EDGE_KINDS.get(str(ref.get("kind") or ""))
        if resource is None:
            log.warning("edge event %s about a %s: not supported", reason, ref.get("kind"))
            return False
        ref = {k: v for k, v in ref.items() if v not in (None, "")}
        if field_path:
            ref["fieldPath"] = field_path
        content = {
            "time": time_ns or time.time_ns(),
            "event": {"involvedObject": ref, "type": type_, "reason": reason, "message": message, "component": self.component, "host": self.node},
        }
        oref = names.ObjectRef(resource, ref.get("namespace") if resource == "pods" else None, str(ref.get("name") or ""))
        env = Envelope.new(source=self.component, operation=OP_INSERT, resource="events", content=content)
        try:
            await self.bus.js_publish(names.outbox_subject(self.node, names.UP_EVENT, oref), env, stream=names.STREAM_EDGE_UP)
            return True
        except (BusError, names.InvalidName) as exc:
            log.warning("event %s of %s not stored in the outbox: %s", reason, oref, exc)
            return False


def parse_report(content: Any, node: str) -> tuple[int, dict[str, Any]]:
    """(edge time ns, the event part) of an edge event report, or ``InvalidMessage``."""
    if not isinstance(content, dict) or not isinstance(content.get("event"), dict):
        raise InvalidMessage("an event report needs {time, event}")
    t = content.get("time")
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        raise InvalidMessage("an event report needs an integer 'time' (ns)")
    ev = content["event"]
    io = ev.get("involvedObject")
    if not isinstance(io, dict) or io.get("kind") not in EDGE_KINDS or not isinstance(io.get("name"), str):
        raise InvalidMessage("an event report needs involvedObject {kind: Pod|Node, name}")
    for k in ("type", "reason", "message", "component"):
        if not isinstance(ev.get(k), str):
            raise InvalidMessage(f"an event report needs a string {k!r}")
    if ev["type"] not in (NORMAL, WARNING):
        raise InvalidMessage(f"event type must be Normal or Warning, not {ev['type']!r}")
    if io["kind"] == "Node" and io["name"] != node:
        raise InvalidMessage(f"node {node} may not report events of node {io['name']}")
    return t, ev


def report_event(t_ns: int, ev: dict[str, Any], node: str) -> dict[str, Any]:
    """The Event object one occurrence of an edge report makes (count 1)."""
    ref = dict(ev["involvedObject"])
    ref.setdefault("apiVersion", "v1")
    if ref.get("kind") == "Node":
        ref.pop("namespace", None)
    out = new_event(ref, ev["type"], ev["reason"], ev["message"], component=ev["component"], host=node, now=_ts_ns(t_ns))
    out["metadata"]["annotations"] = {REPORT_TIME: str(t_ns)}
    return out


def merge_report(cur: dict[str, Any], t_ns: int) -> dict[str, Any] | None:
    """``cur`` counting one more occurrence at edge time ``t_ns`` (None: already counted)."""
    ann = cur.setdefault("metadata", {}).setdefault("annotations", {})
    try:
        last = int(ann.get(REPORT_TIME, "0"))
    except ValueError:
        last = 0
    if t_ns <= last:
        return None
    ann[REPORT_TIME] = str(t_ns)
    cur["count"] = int(cur.get("count") or 1) + 1
    ts = _ts(_ts_ns(t_ns))
    if ts > str(cur.get("lastTimestamp") or ""):
        cur["lastTimestamp"] = ts
    return cur
