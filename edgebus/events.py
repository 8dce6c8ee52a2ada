"""Recording Kubernetes ``Event`` objects from cloud services.

An :class:`EventRecorder` turns "this happened to that object" into a core/v1 ``Event``,
as client-go's recorder does: events with the same involved object, type, reason, message
and reporting component are one object whose ``count`` and ``lastTimestamp`` grow, so a
condition that repeats (a pod that keeps failing to schedule, a crash loop) never floods the
store. The name is derived from those fields, so two replicas recording the same event
update one object instead of creating two.

Recording never fails the caller: an event that cannot be written is logged and dropped
(events are informational, as in Kubernetes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

from edgebus.errors import AlreadyExists, ApiError, Conflict, NotFound
from edgebus.objects import EVENTS
from edgebus.objects.resources import meta
from edgebus.objectstore import ObjectStore

log = logging.getLogger("edgebus.events")

NORMAL = "Normal"
WARNING = "Warning"


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
