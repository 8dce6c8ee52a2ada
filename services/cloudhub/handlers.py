"""cloudhub handlers: node join, and ingestion of everything edges send up."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from edgebus import events, names
from edgebus.bus import KV, DurableSpec, Message, Router
from edgebus.envelope import pack, unpack
from edgebus.events import EventRecorder
from edgebus.errors import AlreadyExists, Conflict, InvalidMessage, NotFound, RetryLater, Unavailable
from edgebus.objects import EVENTS, NODES, PODS, RESOURCES
from edgebus.objectstore import ObjectStore
from edgebus.order import UpOrder
from services.cloudhub import logic
from services.cloudhub.identity import Authority
from services.cloudhub.config import Settings
from services.cloudhub.lifecycle import Lifecycle, NodeView

log = logging.getLogger("edgebus.cloudhub")

INGESTED = Counter("edgebus_cloudhub_ingested_total", "Upstream messages ingested", ["kind", "outcome"])


@dataclass
class Ctx:
    settings: Settings
    store: ObjectStore
    authority: Authority | None = None
    view: NodeView | None = None
    #: the node lifecycle (working while this replica holds its lease)
    lifecycle: Lifecycle | None = None
    events: EventRecorder | None = None
    #: the latest resource usage of each node (``kubectl top``)
    metrics: KV | None = None

    @property
    def grace(self) -> float:
        return self.settings.cloudhub.node_grace_period

    def authority_or_refuse(self) -> Authority:
        if self.authority is None:
            raise Unavailable("this cloud has no identity authority configured (cloudhub.pki_dir): nodes cannot join")
        return self.authority


#: What cloudhub ingests from EDGEBUS_UP: heartbeats (and any other kind without an object),
#: node and pod status, and node and pod events. Device twins and device events belong to devicecontroller's
#: consumer; the two filters never overlap, so no message is handled twice or dead-lettered.
UP_FILTERS = (
    names.up_kind_filter("*"),  # heartbeats, bare events, and unknown kinds (rejected)
    names.up_kind_filter(names.UP_STATUS, NODES.plural),
    names.up_kind_filter(names.UP_STATUS, PODS.plural),
    names.up_kind_filter(names.UP_EVENT, NODES.plural),
    names.up_kind_filter(names.UP_EVENT, PODS.plural),
    names.up_kind_filter(names.UP_STATUS, names.METRICS_RESOURCE),
)

UP_CONSUMER = DurableSpec(
    stream=names.STREAM_UP,
    durable=names.CONSUMER_CLOUDHUB,
    filter_subjects=UP_FILTERS,
    ack_wait=10.0,
    max_ack_pending=1000,
    batch=100,
)

router: Router[Ctx] = Router("cloudhub")


@router.reply(names.JOIN_SUBJECT, name="join")
async def join(m: Message, ctx: Ctx) -> dict[str, Any]:
    """A node joining (relayed by the apiserver from ``POST /edgebus/v1/join``)."""
    return await ctx.authority_or_refuse().join(m.env.content)


@router.reply(names.RENEW_SUBJECT, name="renew-expired")
async def renew_expired(m: Message, ctx: Ctx) -> dict[str, Any]:
    """A node renewing an expired link certificate (relayed from ``POST /edgebus/v1/renew``)."""
    return await ctx.authority_or_refuse().renew_offline(m.env.content)


@router.reply(names.hub_node_filter(), name="node-request")
async def node_request(m: Message, ctx: Ctx) -> dict[str, Any]:
    """A node's own request over its link; the subject says which node (nats-server lets
    only that node's credential publish on it)."""
    try:
        node, op = names.parse_hub_node_subject(m.subject)
    except names.InvalidName as exc:
        raise InvalidMessage(str(exc)) from None
    if op == "renew":
        return await ctx.authority_or_refuse().renew_online(node, m.env.content)
    raise InvalidMessage(f"unknown node request {op!r}")


@router.durable(UP_CONSUMER, name="ingest")
async def ingest(m: Message, ctx: Ctx) -> None:
    try:
        up = names.parse_up_subject(m.subject)
    except names.InvalidName as exc:
        raise InvalidMessage(str(exc)) from None
    if up.kind == names.UP_HEARTBEAT:
        await heartbeat(ctx, up.node, m.env.content, stored_at=m.raw.timestamp)
    elif up.kind == names.UP_STATUS and up.ref is not None and up.ref.resource == names.METRICS_RESOURCE:
        await usage(ctx, up.node, up.ref, m.env.content)
    elif up.kind == names.UP_STATUS and up.ref is not None:
        await status(ctx, up.node, up.ref, m.env.content, source=m.env.route.source, order=UpOrder.from_headers(m.headers))
    elif up.kind == names.UP_EVENT and up.ref is not None:
        await edge_event(ctx, up.node, up.ref, m.env.content)
    elif up.kind == names.UP_EVENT:
        INGESTED.labels("event", "bare").inc()  # not about an object: nothing to record
    else:
        raise InvalidMessage(f"unknown upstream kind {up.kind!r}")


def _time_ns(content: Any) -> int:
    if not isinstance(content, dict):
        raise InvalidMessage("upstream content must be a map")
    t = content.get("time")
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        raise InvalidMessage("upstream content needs an integer 'time' (ns)")
    return t


async def heartbeat(ctx: Ctx, node: str, content: Any, *, stored_at: dt.datetime | None = None) -> None:
    """Record that ``node`` is alive: Ready=True and ``lastHeartbeatTime`` (the cloud's
    time), written at most every grace/4 per node — a heartbeat of a node the view shows
    recorded recently costs no I/O. Liveness never reads the edge's clock: a heartbeat
    counts if the cloud *stored* it within the grace period."""
    _time_ns(content)  # a well-formed report, whatever its edge time
    now = dt.datetime.now(dt.UTC)
    if not logic.heartbeat_fresh_at(stored_at, now, ctx.grace):
        INGESTED.labels("heartbeat", "stale").inc()
        return
    if ctx.view is not None and ctx.view.recent(node, now, ctx.grace / 4):
        INGESTED.labels("heartbeat", "recent").inc()
        return

    def update(obj: dict[str, Any]) -> dict[str, Any] | None:
        if not logic.needs_heartbeat_write(obj, now, ctx.grace):
            return None
        logic.without_lifecycle_taints(obj)
        return logic.set_ready(obj, "True", "EdgeReady", "edge node is posting heartbeats", now, heartbeat=True)

    try:
        await ctx.store.mutate(NODES, None, node, update)
    except NotFound:
        if not ctx.settings.cloudhub.auto_register_nodes:
            INGESTED.labels("heartbeat", "unknown-node").inc()
            raise InvalidMessage(f"heartbeat from node {node}, which has not joined") from None
        try:
            await ctx.store.create(NODES, logic.set_ready(logic.new_node(node, {}, None), "True", "EdgeReady", "edge node is posting heartbeats", now, heartbeat=True))
            log.info("node %s registered itself (auto_register_nodes)", node)
        except AlreadyExists:
            pass
    INGESTED.labels("heartbeat", "ok").inc()


async def usage(ctx: Ctx, node: str, ref: names.ObjectRef, content: Any) -> None:
    """A node's resource usage report (``kubectl top``): the latest per node is kept in the
    metrics bucket (an older one, redelivered or late, never replaces a newer one)."""
    if ref.name != node or not isinstance(content, dict) or not isinstance(content.get("pods"), list):
        raise InvalidMessage(f"node {node}: not a usage report of its own")
    if ctx.metrics is None:
        return
    key = names.encode_token(node)
    cur = await ctx.metrics.get(key)
    if cur is not None and cur.value and _time_ns(unpack(cur.value)) >= _time_ns(content):
        return
    await ctx.metrics.put(key, pack({**content, "node": {**(content.get("node") or {}), "name": node}}))
    INGESTED.labels("metrics", "ok").inc()


async def status(ctx: Ctx, node: str, ref: names.ObjectRef, content: Any, *, source: str = "", order: UpOrder | None = None) -> None:
    t = _time_ns(content)
    reported = content.get("status")
    if not isinstance(reported, dict):
        raise InvalidMessage("status report needs a 'status' map")
    resource = RESOURCES.get(ref.resource)
    if resource is NODES:
        if ref.name != node:
            raise InvalidMessage(f"node {node} may not report the status of node {ref.name}")

        reporter = logic.reporter(source)
        pressure: list[tuple[str, str]] = []
        backlog = None
        if "outbox" in content:  # edgehub's outbox backlog report
            try:
                backlog = logic.outbox_backlog(content["outbox"], dt.datetime.now(dt.UTC))
            except ValueError as exc:
                raise InvalidMessage(f"node {node}: {exc}") from None

        def update_node(obj: dict[str, Any]) -> dict[str, Any] | None:
            # each reporter (edgehub, edged) has its own staleness: one's newer report
            # never hides the other's, and the merge is field by field
            pressure.clear()
            if not logic.report_is_newer(obj, t, reporter, order):
                return None
            logic.stamp(obj, t, reporter, order)
            before = logic.condition_status(obj, logic.DISK_PRESSURE)
            out = logic.merge_node_status(obj, reported)
            if backlog is not None:
                out.setdefault("metadata", {}).setdefault("annotations", {})[names.ANN_OUTBOX_BACKLOG] = backlog
            after = logic.condition_status(out, logic.DISK_PRESSURE)
            if after != before and after in ("True", "False"):
                pressure.append((after, str((logic.condition(out, logic.DISK_PRESSURE) or {}).get("message", ""))))
            return out

        try:
            res = await ctx.store.mutate(NODES, None, node, update_node)
        except NotFound:
            raise InvalidMessage(f"status from node {node}, which has not joined") from None
        INGESTED.labels("node-status", "ok" if res is not None else "stale").inc()
        if res is not None and pressure and ctx.events is not None:
            st, message = pressure[0]
            if st == "True":
                log.warning("node %s has disk pressure: %s", node, message)
                await ctx.events.record(res, "Warning", "NodeHasDiskPressure", f"Node {node} status is now: NodeHasDiskPressure ({message})")
            else:
                await ctx.events.record(res, "Normal", "NodeHasNoDiskPressure", f"Node {node} status is now: NodeHasNoDiskPressure")
    elif resource is PODS:
        uid = content.get("uid") if isinstance(content.get("uid"), str) else None
        if content.get("deleted") is True:
            await pod_deleted(ctx, node, ref, uid)
            return

        def update_pod(obj: dict[str, Any]) -> dict[str, Any] | None:
            if (obj.get("spec") or {}).get("nodeName") != node:
                raise InvalidMessage(f"node {node} reported pod {ref} which is not bound to it")
            if uid and (obj.get("metadata") or {}).get("uid") != uid:
                return None  # a report about an earlier pod of the same name
            if not logic.report_is_newer(obj, t, order=order):
                return None
            logic.stamp(obj, t, order=order)
            obj["status"] = reported
            obj["metadata"].get("annotations", {}).pop(logic.READY_BEFORE, None)  # the node's own word again
            return obj

        try:
            res = await ctx.store.mutate(PODS, ref.namespace, ref.name, update_pod)
        except NotFound:
            INGESTED.labels("pod-status", "gone").inc()
            return
        INGESTED.labels("pod-status", "ok" if res is not None else "stale").inc()
    else:
        raise InvalidMessage(f"status of {ref.resource} is not accepted from edges")


async def pod_deleted(ctx: Ctx, node: str, ref: names.ObjectRef, uid: str | None) -> None:
    """The node confirms a terminating pod is gone from its runtime: remove the pod (the
    same incarnation only: its uid must match)."""
    for _ in range(20):
        try:
            obj = await ctx.store.get(PODS, ref.namespace, ref.name)
        except NotFound:
            INGESTED.labels("pod-deleted", "gone").inc()
            return
        md = obj.get("metadata") or {}
        if (obj.get("spec") or {}).get("nodeName") != node:
            raise InvalidMessage(f"node {node} confirmed the deletion of pod {ref}, which is not bound to it")
        if uid and md.get("uid") != uid:
            INGESTED.labels("pod-deleted", "other-uid").inc()
            return
        if not md.get("deletionTimestamp"):
            INGESTED.labels("pod-deleted", "not-terminating").inc()
            log.warning("node %s confirmed the deletion of pod %s, which is not being deleted; ignored", node, ref)
            return
        try:
            await ctx.store.delete(PODS, ref.namespace, ref.name, resource_version=md.get("resourceVersion"), grace_period_seconds=0)
        except Conflict:
            continue
        except NotFound:
            return
        INGESTED.labels("pod-deleted", "ok").inc()
        log.info("pod %s removed: node %s confirmed its containers are gone", ref, node)
        return
    raise RetryLater(f"pod {ref} kept changing while being removed")


async def edge_event(ctx: Ctx, node: str, ref: names.ObjectRef, content: Any) -> None:
    """An event a node recorded (edged, edgehub): one more occurrence of an aggregated Event
    object, counted once however often the message is delivered."""
    t, ev = events.parse_report(content, node)
    io = ev["involvedObject"]
    if RESOURCES.get(ref.resource) not in (PODS, NODES) or io.get("name") != ref.name or (ref.resource == PODS.plural and io.get("namespace", "default") != ref.namespace):
        raise InvalidMessage(f"event subject {ref} does not match its involvedObject {io.get('kind')}/{io.get('name')}")
    if ref.resource == PODS.plural:
        try:
            pod = await ctx.store.get(PODS, ref.namespace, ref.name)
        except NotFound:
            pod = None  # gone since (e.g. Killing): the event still tells what happened
        if pod is not None and pod["metadata"].get("uid") == io.get("uid") and (pod.get("spec") or {}).get("nodeName") != node:
            raise InvalidMessage(f"node {node} reported an event of pod {ref}, which is not bound to it")
    obj = events.report_event(t, ev, node)
    ns = obj["metadata"]["namespace"]
    try:
        await ctx.store.create(EVENTS, obj, namespace=ns)
        INGESTED.labels("event", "created").inc()
        return
    except AlreadyExists:
        pass
    except NotFound:  # its namespace is gone
        INGESTED.labels("event", "no-namespace").inc()
        return
    try:
        res = await ctx.store.mutate(EVENTS, ns, obj["metadata"]["name"], lambda cur: events.merge_report(cur, t))
    except NotFound:
        raise RetryLater("event expired between create and update") from None
    INGESTED.labels("event", "counted" if res is not None else "duplicate").inc()
