"""devicecontroller handlers: twin reports and rule events from every node, into the API."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from edgebus import names
from edgebus.bus import DurableSpec, Message, Router
from edgebus.errors import AlreadyExists, InvalidMessage, NotFound
from edgebus.objects import DEVICEMODELS, DEVICES, EVENTS
from edgebus.objects.devices import device_model_name, device_node
from edgebus.objectstore import ObjectStore
from edgebus.order import UpOrder
from services.devicecontroller import logic

log = logging.getLogger("edgebus.devicecontroller")

INGESTED = Counter("edgebus_devicecontroller_ingested_total", "Upstream device messages", ["kind", "outcome"])


@dataclass
class Ctx:
    store: ObjectStore


def up_consumer(batch: int = 200, ack_wait: float = 10.0) -> DurableSpec:
    """Every upstream message about devices, of every node: ``edgebus.up.*.*.devices.>``
    (twin reports and rule events; cloudhub's consumer leaves these subjects out)."""
    return DurableSpec(
        stream=names.STREAM_UP,
        durable=names.CONSUMER_DEVICECONTROLLER,
        filter_subject=names.up_kind_filter("*", DEVICES.plural),
        ack_wait=ack_wait,
        max_ack_pending=max(batch * 4, 1000),
        batch=batch,
    )


def build_router(batch: int = 200, ack_wait: float = 10.0) -> Router[Ctx]:
    router: Router[Ctx] = Router("devicecontroller")

    @router.durable_batch(up_consumer(batch, ack_wait), name="ingest")
    async def ingest(msgs: list[Message], ctx: Ctx) -> None:
        """Coalesce a batch: one status write per device (reports merged in order), one
        Event per rule firing (created once: its name is the firing's id)."""
        reports: dict[tuple[str, str, str], list[tuple[Message, dict[str, Any]]]] = {}
        for m in msgs:
            kind = "unknown"
            try:
                up = names.parse_up_subject(m.subject)
                kind = up.kind
                if up.ref is None or up.ref.resource != DEVICES.plural or not up.ref.namespace:
                    raise InvalidMessage(f"{m.subject} names no device")
                if up.kind == names.UP_STATUS:
                    reports.setdefault((up.node, up.ref.namespace, up.ref.name), []).append((m, logic.check_report(m.env.content)))
                elif up.kind == names.UP_EVENT:
                    await rule_event(ctx, up.node, up.ref, m.env.content)
                else:
                    raise InvalidMessage(f"unknown upstream kind {up.kind!r}")
            except (InvalidMessage, names.InvalidName) as exc:
                m.reject(str(exc))
                INGESTED.labels(kind, "rejected").inc()
        for (node, ns, name), items in reports.items():
            try:
                await device_status(ctx, node, ns, name, [(r, UpOrder.from_headers(m.headers)) for m, r in items])
            except InvalidMessage as exc:
                for m, _ in items:
                    m.reject(str(exc))

    return router


async def device_status(ctx: Ctx, node: str, namespace: str, name: str, reports: list[tuple[dict[str, Any], UpOrder | None]]) -> None:
    try:
        dev = await ctx.store.get(DEVICES, namespace, name)
    except NotFound:
        INGESTED.labels("status", "gone").inc(len(reports))
        return
    model_name = device_model_name(dev)
    model = None
    if model_name:
        try:
            model = await ctx.store.get(DEVICEMODELS, namespace, model_name)
        except NotFound:
            model = None

    def update(obj: dict[str, Any]) -> dict[str, Any] | None:
        if device_node(obj) != node:
            raise InvalidMessage(f"node {node} reported device {namespace}/{name}, which is not bound to it")
        changed = False
        for r, order in reports:
            changed = logic.merge_report(obj, r, model, order) or changed
        return obj if changed else None

    try:
        res = await ctx.store.mutate(DEVICES, namespace, name, update)
    except NotFound:
        INGESTED.labels("status", "gone").inc(len(reports))
        return
    INGESTED.labels("status", "ok" if res is not None else "stale").inc(len(reports))


async def rule_event(ctx: Ctx, node: str, ref: names.ObjectRef, content: Any) -> None:
    ev = logic.check_event(content)
    if ev["namespace"] != ref.namespace or ev["device"] != ref.name:
        raise InvalidMessage("rule event does not match its subject")
    uid = ""
    try:
        dev = await ctx.store.get(DEVICES, ref.namespace, ref.name)
        uid = str((dev.get("metadata") or {}).get("uid") or "")
    except NotFound:
        pass  # the event is still recorded: the firing happened
    try:
        await ctx.store.create(EVENTS, logic.rule_event(ev, node, uid))
        INGESTED.labels("event", "ok").inc()
    except AlreadyExists:
        INGESTED.labels("event", "duplicate").inc()
    except NotFound:
        INGESTED.labels("event", "gone").inc()  # the namespace is gone
