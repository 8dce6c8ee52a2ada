"""metamanager handlers: thin - decode, decide (logic), persist (store), publish events."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge

from edgebus import clock, names
from edgebus.bus import Bus, BusError, DurableSpec, Message, Router, stream_state
from edgebus.envelope import OP_DELETE, Envelope
from edgebus.errors import BadRequest, NotFound
from edgebus.objects import PODS, RESOURCES, resolve
from edgebus.objects.resources import UnknownResource
from edgebus.objects.selectors import label_predicate
from services.metamanager import logic
from edgebus.store import StoreFull
from services.metamanager.store import Change, Item, MetaStore

log = logging.getLogger("edgebus.metamanager")

APPLIED = Counter("edgebus_meta_applied_total", "Downstream changes committed to LMDB", ["resource", "type"])
SKIPPED = Counter("edgebus_meta_skipped_total", "Downstream messages already applied (redeliveries)")
OBJECTS = Gauge("edgebus_meta_objects", "Objects in the node's local store")
LMDB_BYTES = Gauge("edgebus_lmdb_bytes", "Bytes used in an LMDB environment", ["service"])
STORE_FULL = Gauge("edgebus_meta_store_full", "1 while the local store refuses commits (full disk or map)")

T = TypeVar("T")


@dataclass
class Ctx:
    node: str
    bus: Bus
    store: MetaStore
    #: in-process listeners of committed changes (the metaserver's watches)
    listeners: list[Callable[[Change], None]] = field(default_factory=list)
    #: why the local store refuses commits (reported as the node's DiskPressure), or None
    store_problem: str | None = None
    store_reported: bool = False


async def committed(ctx: Ctx, commit: Awaitable[T]) -> T:
    """Run a store commit; a full store (``StoreFull``, a ``RetryLater``: the messages are
    not acknowledged and come back) is logged and reported as the node's ``DiskPressure``
    condition, and so is its end."""
    try:
        out = await commit
    except StoreFull as exc:
        if ctx.store_problem is None:
            log.error("local store full, downstream changes wait (not acknowledged) until it has space: %s", exc)
            STORE_FULL.set(1)
            ctx.store_reported = False
        ctx.store_problem = str(exc)
        if not ctx.store_reported:
            ctx.store_reported = await report_disk_pressure(ctx, str(exc))
        raise
    if ctx.store_problem is not None:
        log.warning("local store commits again")
        ctx.store_problem = None
        STORE_FULL.set(0)
        await report_disk_pressure(ctx, None)
    return out


async def report_disk_pressure(ctx: Ctx, problem: str | None) -> bool:
    """Report the node's DiskPressure through the outbox; False when it could not be stored."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = Envelope.new(source="metamanager", operation="update", resource="nodes", content={"time": clock.now_ns(), "status": logic.disk_pressure_status(problem, now)})
    try:
        await ctx.bus.js_publish(names.outbox_subject(ctx.node, names.UP_STATUS, names.ObjectRef("nodes", None, ctx.node)), env, stream=names.STREAM_EDGE_UP)
    except BusError as exc:
        log.error("DiskPressure of node %s not reported: %s", ctx.node, exc)
        return False
    return True


#: an idle fetch is answered as soon as a message is stored, so how long it waits costs no
#: latency, only wake-ups of an idle node (ten times fewer than the default 1 s: see docs/footprint.md)
IDLE_FETCH = 10.0


def down_consumer(batch: int, ack_wait: float) -> DurableSpec:
    return DurableSpec(
        stream=names.STREAM_EDGE_DOWN,
        durable=names.CONSUMER_METAMANAGER,
        expires=IDLE_FETCH,
        ack_wait=ack_wait,
        max_ack_pending=max(batch * 4, 1024),
        batch=batch,
    )


def status_consumer(node: str) -> DurableSpec:
    return DurableSpec(
        stream=names.STREAM_EDGE_UP,
        durable=names.CONSUMER_METAMANAGER_STATUS,
        filter_subject=names.outbox_status_filter(node, PODS.plural),
        expires=IDLE_FETCH,
        ack_wait=5.0,
        batch=100,
    )


def build_router(node: str, *, batch: int = 256, ack_wait: float = 5.0) -> Router[Ctx]:
    router: Router[Ctx] = Router("metamanager")

    @router.durable_batch(down_consumer(batch, ack_wait), name="apply-down")
    async def apply_down(msgs: list[Message], ctx: Ctx) -> None:
        """Commit a fetched batch of desired-state messages in one LMDB transaction."""
        items: list[Item] = []
        skipped = 0
        for m in msgs:
            try:
                subj_node, ref = names.parse_down_subject(m.subject)
            except names.InvalidName as exc:
                m.reject(str(exc))
                continue
            if subj_node != ctx.node:
                m.reject(f"message for node {subj_node} reached {ctx.node}")
                continue
            resource = RESOURCES.get(ref.resource)
            if resource is None:
                m.reject(f"unknown resource {ref.resource!r}")
                continue
            key = resource.lmdb_key(ref.namespace, ref.name)
            d = logic.decide(resource, ref.name, ref.namespace, m.env.route.operation, m.env.seq, m.env.content, ctx.store.meta_of(key))
            if d.action == logic.REJECT:
                m.reject(d.reason)
            elif d.action == logic.SKIP:
                skipped += 1
                log.debug("skip %s: %s", key, d.reason)
            else:
                items.append(
                    Item(
                        resource,
                        ref.namespace,
                        ref.name,
                        d.action == logic.DELETE,
                        m.env.seq,
                        m.env.resource_version,
                        m.env.content if d.action == logic.APPLY else None,
                    )
                )
        changes = await committed(ctx, ctx.store.apply(items, received=len(msgs)))
        if skipped:
            await ctx.store.count_skipped(skipped)
            SKIPPED.inc(skipped)
        for ch in changes:
            APPLIED.labels(ch.resource, ch.type).inc()
            await publish_change(ctx, ch)
        if changes:
            OBJECTS.set(ctx.store.objects.count())
            LMDB_BYTES.labels("metamanager").set(ctx.store.store.used_bytes())

    @router.durable_batch(status_consumer(node), name="own-status")
    async def own_status(msgs: list[Message], ctx: Ctx) -> None:
        """Keep the latest status this node reported for its own pods (from its outbox)."""
        reports = []
        for m in msgs:
            try:
                up = names.parse_up_subject(names.up_subject_from_outbox(m.subject))
            except names.InvalidName as exc:
                m.reject(str(exc))
                continue
            c = m.env.content
            if up.ref is None or not isinstance(c, dict) or not isinstance(c.get("time"), int) or not isinstance(c.get("status"), dict):
                m.reject("a status report needs {time: int, status: map}")
                continue
            r = RESOURCES[up.ref.resource]
            reports.append((r.lmdb_key(up.ref.namespace, up.ref.name), r.plural, up.ref.namespace, up.ref.name, c["time"], c["status"], m.seq))
        if reports:
            # reports are ordered by their outbox sequence (the edge's clock may jump); the
            # outbox's identity tells a re-created outbox (sequences start over) from a stale one
            epoch = (await stream_state(ctx.bus, names.STREAM_EDGE_UP)).created
            for ch in await committed(ctx, ctx.store.apply_status(reports, epoch=epoch)):
                await publish_change(ctx, ch)

    @router.reply(names.meta_subject(node, "list"), name="list")
    async def list_objects(m: Message, ctx: Ctx) -> dict[str, Any]:
        q = m.env.content or {}
        if not isinstance(q, dict):
            raise BadRequest("list query must be a map")
        return query_list(ctx.store, q)

    @router.reply(names.meta_subject(node, "get"), name="get")
    async def get_object(m: Message, ctx: Ctx) -> dict[str, Any]:
        q = m.env.content or {}
        if not isinstance(q, dict) or not q.get("resource") or not q.get("name"):
            raise BadRequest("get needs resource and name")
        try:
            resource = resolve(str(q["resource"]))
        except UnknownResource as exc:
            raise NotFound(str(exc)) from None
        key = resource.lmdb_key(q.get("namespace") if resource.namespaced else None, str(q["name"]))
        obj = ctx.store.objects.get(key)
        if obj is None:
            raise NotFound(f'{resource.plural} "{q["name"]}" not found on node {ctx.node}')
        return {"object": ctx.store.with_status(key, obj), "meta": ctx.store.meta_of(key), "revision": ctx.store.revision()}

    @router.reply(names.meta_subject(node, "changes"), name="changes")
    async def changes(m: Message, ctx: Ctx) -> dict[str, Any]:
        q = m.env.content if isinstance(m.env.content, dict) else {}
        since, limit = q.get("since", 0), q.get("limit", 1000)
        if not isinstance(since, int) or not isinstance(limit, int):
            raise BadRequest("since and limit must be integers")
        return {"revision": ctx.store.revision(), "changes": ctx.store.changes(since, min(max(limit, 1), 10_000))}

    @router.reply(names.meta_subject(node, "stats"), name="stats")
    async def stats(m: Message, ctx: Ctx) -> dict[str, Any]:
        return {"node": ctx.node, **ctx.store.stats()}

    return router


def query_list(store: MetaStore, q: dict[str, Any]) -> dict[str, Any]:
    """Objects in the local store, optionally of one resource / namespace / label selector."""
    prefixes: list[str]
    if q.get("resource"):
        try:
            resource = resolve(str(q["resource"]))
        except UnknownResource as exc:
            raise NotFound(str(exc)) from None
        ns = q.get("namespace") if resource.namespaced else None
        prefixes = [resource.lmdb_prefix(ns)]
    else:
        prefixes = [""]
    pred = label_predicate(q.get("labelSelector"))
    revision = store.revision()
    items = []
    for prefix in prefixes:
        for key, obj in store.objects.items(prefix):
            if q.get("namespace") and not q.get("resource") and (obj.get("metadata") or {}).get("namespace") != q["namespace"]:
                continue
            if not pred(obj):
                continue
            m = store.meta_of(key) or {}
            item: dict[str, Any] = {"key": key, "sync": m.get("sync"), "updates": m.get("updates"), "revision": m.get("revision")}
            if q.get("objects", True):
                item["object"] = store.with_status(key, obj)
            items.append(item)
    return {"revision": revision, "items": items}


async def publish_change(ctx: Ctx, ch: Change) -> None:
    if ch.object is not None and ch.type != "DELETED":
        ch.object = ctx.store.with_status(ch.key, ch.object)
    for listener in ctx.listeners:
        listener(ch)
    env = Envelope.new(
        source="metamanager",
        operation=OP_DELETE if ch.type == "DELETED" else "update",
        resource=ch.resource,
        content={"type": ch.type, "key": ch.key, "namespace": ch.namespace, "name": ch.name, "object": ch.object},
        seq=ch.revision,
    )
    try:
        await ctx.bus.publish(names.meta_events_subject(ctx.node, ch.resource), env)
    except Exception as exc:  # watchers re-list on gaps; never fail the commit path
        log.debug("event publish failed: %s", exc)
