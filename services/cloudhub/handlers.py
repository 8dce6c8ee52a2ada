"""cloudhub handlers: node join, and ingestion of everything edges send up."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from edgebus import names
from edgebus.bus import DurableSpec, Message, Router
from edgebus.errors import AlreadyExists, Conflict, InvalidMessage, NotFound, RetryLater, Unavailable
from edgebus.objects import NODES, PODS, RESOURCES
from edgebus.objectstore import ObjectStore
from services.cloudhub import logic
from services.cloudhub.identity import Authority
from services.cloudhub.config import Settings

log = logging.getLogger("edgebus.cloudhub")

INGESTED = Counter("edgebus_cloudhub_ingested_total", "Upstream messages ingested", ["kind", "outcome"])


@dataclass
class Ctx:
    settings: Settings
    store: ObjectStore
    authority: Authority | None = None

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
        await heartbeat(ctx, up.node, m.env.content)
    elif up.kind == names.UP_STATUS and up.ref is not None:
        await status(ctx, up.node, up.ref, m.env.content, source=m.env.route.source)
    elif up.kind == names.UP_EVENT:
        INGESTED.labels("event", "ok").inc()
    else:
        raise InvalidMessage(f"unknown upstream kind {up.kind!r}")


def _time_ns(content: Any) -> int:
    if not isinstance(content, dict):
        raise InvalidMessage("upstream content must be a map")
    t = content.get("time")
    if not isinstance(t, int) or isinstance(t, bool) or t <= 0:
        raise InvalidMessage("upstream content needs an integer 'time' (ns)")
    return t


async def heartbeat(ctx: Ctx, node: str, content: Any) -> None:
    t = _time_ns(content)
    if not logic.heartbeat_fresh(t, time.time_ns(), ctx.grace):
        INGESTED.labels("heartbeat", "stale").inc()
        return
    now = dt.datetime.now(dt.UTC)

    def update(obj: dict[str, Any]) -> dict[str, Any] | None:
        if not logic.needs_heartbeat_write(obj, now, ctx.grace):
            return None
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


async def status(ctx: Ctx, node: str, ref: names.ObjectRef, content: Any, *, source: str = "") -> None:
    t = _time_ns(content)
    reported = content.get("status")
    if not isinstance(reported, dict):
        raise InvalidMessage("status report needs a 'status' map")
    resource = RESOURCES.get(ref.resource)
    if resource is NODES:
        if ref.name != node:
            raise InvalidMessage(f"node {node} may not report the status of node {ref.name}")

        reporter = logic.reporter(source)

        def update_node(obj: dict[str, Any]) -> dict[str, Any] | None:
            # each reporter (edgehub, edged) has its own staleness: one's newer report
            # never hides the other's, and the merge is field by field
            if not logic.report_is_newer(obj, t, reporter):
                return None
            logic.stamp(obj, t, reporter)
            return logic.merge_node_status(obj, reported)

        try:
            res = await ctx.store.mutate(NODES, None, node, update_node)
        except NotFound:
            raise InvalidMessage(f"status from node {node}, which has not joined") from None
        INGESTED.labels("node-status", "ok" if res is not None else "stale").inc()
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
            if not logic.report_is_newer(obj, t):
                return None
            logic.stamp(obj, t)
            obj["status"] = reported
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
