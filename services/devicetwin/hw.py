"""devicetwin's device side: KubeEdge's ``$hw`` topics. Subscribes (core NATS, what
nats-server's MQTT listener maps MQTT topics to) to ``twin/update``, ``twin/get``,
``state/update`` of every device and to the node's ``membership/get``; answers on the
``.../result`` topics; publishes ``twin/update/delta`` when a desired value changes,
``twin/update/document`` after each change and ``membership/updated``.

:func:`apply_update` and :func:`set_device_state` are also what DMI reports go through."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter, Histogram

from edgebus import names
from edgebus.bus import BusMsg
from edgebus.devices import hw
from edgebus.errors import InvalidMessage
from services.devicetwin import logic, shapes
from services.devicetwin.logic import Key
from services.devicetwin.state import TwinState

log = logging.getLogger("edgebus.devicetwin")

HW_MESSAGES = Counter("edgebus_devicetwin_messages_total", "$hw messages handled", ["topic", "outcome"])
RULE_FIRINGS = Counter("edgebus_devicetwin_rule_firings_total", "Local rule firings", ["rule"])
HANDLE_SECONDS = Histogram(
    "edgebus_devicetwin_update_seconds", "twin/update handling time (to delta published)", buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)
)

Handler = Callable[[TwinState, BusMsg], Awaitable[None]]


async def run(st: TwinState) -> None:
    """The ``hw`` task: the subscriptions, until cancelled."""
    await st.bus.wait_connected()
    subs = [
        await st.bus.subscribe(names.hw_device_filter(names.HW_TWIN_UPDATE), _guard(st, "twin/update", on_twin_update)),
        await st.bus.subscribe(names.hw_device_filter(names.HW_TWIN_GET), _guard(st, "twin/get", on_twin_get)),
        await st.bus.subscribe(names.hw_device_filter(names.HW_STATE_UPDATE), _guard(st, "state/update", on_state_update)),
        await st.bus.subscribe(names.hw_node_subject(st.node, names.HW_MEMBERSHIP_GET), _guard(st, "membership/get", on_membership_get)),
    ]
    try:
        await asyncio.Event().wait()
    finally:
        for unsub in subs:
            await unsub()


def _guard(st: TwinState, topic: str, fn: Handler) -> Callable[[BusMsg], Awaitable[None]]:
    async def handle(m: BusMsg) -> None:
        try:
            await fn(st, m)
        except Exception:  # one bad message never stops the subscription
            HW_MESSAGES.labels(topic, "failed").inc()
            log.exception("%s handler failed on %s", topic, m.subject)

    return handle


def _device(st: TwinState, subject: str) -> tuple[Key, logic.DeviceInfo | None]:
    ns, name, _ = names.parse_hw_device_subject(subject)
    return (ns, name), st.infos.get((ns, name))


async def on_twin_update(st: TwinState, m: BusMsg) -> None:
    try:
        key, info = _device(st, m.subject)
    except names.InvalidName:
        HW_MESSAGES.labels("twin/update", "rejected").inc()
        return
    result = names.hw_device_subject(key[0], key[1], names.HW_TWIN_RESULT)
    try:
        msg = hw.loads(m.data)
        if info is None:
            await st.send(result, hw.error_result(hw.event_id_of(msg), shapes.not_member(key, st.node), 404))
            HW_MESSAGES.labels("twin/update", "unknown").inc()
            return
        actual, expected, errors = hw.reported_values(msg)
    except InvalidMessage as exc:
        HW_MESSAGES.labels("twin/update", "rejected").inc()
        await st.send(result, hw.error_result(shapes.event_id(m.data), str(exc)))
        return
    eid = hw.event_id_of(msg)
    out, accepted = await apply_update(st, key, info, actual, expected, errors, hw.reported_types(msg), eid)
    HW_MESSAGES.labels("twin/update", "error" if out.errors else "ok").inc()
    await st.send(result, hw.result(eid, twin=accepted, errors=out.errors))


async def apply_update(
    st: TwinState,
    key: Key,
    info: logic.DeviceInfo,
    actual: dict[str, tuple[Any, int]],
    expected: dict[str, tuple[Any, int]],
    errors: dict[str, str],
    types: dict[str, str],
    eid: str,
) -> tuple[logic.Applied, dict[str, Any]]:
    """Apply reported (``actual``) and edge desired (``expected``) values, from MQTT or
    DMI: rules, deltas, the document of what changed, storage, the outbox. Returns the
    outcome and the accepted entries (KubeEdge's ``MsgTwin`` shape)."""
    t0 = time.perf_counter()
    twin = st.twins.setdefault(key, logic.new_twin())
    before = {n: shapes.msg_entry(twin, info, n) for n in list(actual) + list(expected) if n in info.props and n in (twin.get("props") or {})}
    out = logic.Applied(errors=dict(errors))
    now = hw.now_ms()
    logic.apply_reported(twin, info, actual, out, types)
    firings, rule_desired = logic.evaluate_rules(twin, info, out.reported, now, trigger=eid)
    logic.apply_expected(twin, info, expected, now, out)
    changed = rule_desired + [p for p in out.desired if p not in rule_desired]
    if changed:
        delta = logic.deltas(twin, info, changed)
        if delta:
            await publish_delta(st, info, twin, delta, trigger=eid, rules=[f.rule for f in firings])
    HANDLE_SECONDS.observe(time.perf_counter() - t0)
    records = [f.record() for f in firings]
    if out.reported or out.desired or records:
        st.store.commit(key, twin, records)
        st.mark(key)
    for f in firings:
        RULE_FIRINGS.labels(f.rule).inc()
        st.firings += 1
        log.info("rule fired on %s/%s: %s (event %s)", f.namespace, f.device, f.message(), f.id)
    touched = list(dict.fromkeys(out.reported + out.desired))
    if touched:
        doc = {"event_id": eid, "timestamp": now, "twin": shapes.document(before, twin, info, touched)}
        await st.send(names.hw_device_subject(key[0], key[1], names.HW_TWIN_DOCUMENT), doc)
    accepted = {k: v for k, v in shapes.msg_twin(twin, info).items() if (k in actual or k in expected) and k not in out.errors}
    return out, accepted


async def publish_delta(st: TwinState, info: logic.DeviceInfo, twin: dict[str, Any], delta: dict[str, str], *, trigger: str = "", rules: list[str] | None = None) -> None:
    body = shapes.delta_message(twin, info, delta, hw.new_event_id(), hw.now_ms(), trigger=trigger, rules=rules)
    await st.send(names.hw_device_subject(info.namespace, info.name, names.HW_TWIN_DELTA), body)
    st.changed(info.key)


async def on_twin_get(st: TwinState, m: BusMsg) -> None:
    try:
        key, info = _device(st, m.subject)
    except names.InvalidName:
        return
    subject = names.hw_device_subject(key[0], key[1], names.HW_TWIN_GET_RESULT)
    eid = shapes.event_id(m.data)
    if info is None:
        HW_MESSAGES.labels("twin/get", "rejected").inc()
        await st.send(subject, hw.error_result(eid, shapes.not_member(key, st.node), 404))
        return
    HW_MESSAGES.labels("twin/get", "ok").inc()
    await st.send(subject, hw.result(eid, twin=shapes.msg_twin(st.twin_of(key), info)))


async def on_state_update(st: TwinState, m: BusMsg) -> None:
    try:
        key, info = _device(st, m.subject)
    except names.InvalidName:
        return
    subject = names.hw_device_subject(key[0], key[1], names.HW_STATE_RESULT)
    try:
        msg = hw.loads(m.data)
        if info is None:
            await st.send(subject, hw.error_result(hw.event_id_of(msg), shapes.not_member(key, st.node), 404))
            HW_MESSAGES.labels("state/update", "unknown").inc()
            return
        state, reason = logic.parse_state(msg)
    except InvalidMessage as exc:
        HW_MESSAGES.labels("state/update", "rejected").inc()
        await st.send(subject, hw.error_result(shapes.event_id(m.data), str(exc)))
        return
    twin = set_device_state(st, key, state, reason, hw.ts_of(msg.get("timestamp"), hw.now_ms()))
    HW_MESSAGES.labels("state/update", "ok").inc()
    await st.send(subject, hw.state_result(hw.event_id_of(msg), key[1], twin["state"], shapes.rfc3339(int(twin.get("lastOnline") or 0))))


def set_device_state(st: TwinState, key: Key, state: str, reason: str, ts: int) -> dict[str, Any]:
    """Record a device state (MQTT ``state/update`` or DMI ``ReportDeviceStates``)."""
    twin = st.twins.setdefault(key, logic.new_twin())
    if logic.set_state(twin, state, reason[:500], ts):
        st.store.commit(key, twin)
        st.mark(key)
        log.info("device %s/%s is %s%s", key[0], key[1], twin["state"], f" ({reason})" if reason else "")
    return twin


async def on_membership_get(st: TwinState, m: BusMsg) -> None:
    HW_MESSAGES.labels("membership/get", "ok").inc()
    await st.send(names.hw_node_subject(st.node, names.HW_MEMBERSHIP_RESULT), shapes.membership(st.twins, st.infos, shapes.event_id(m.data), hw.now_ms()))


async def membership_updated(st: TwinState, added: list[Key] | None = None, removed: list[Key] | None = None) -> None:
    body = shapes.membership_updated(st.twins, st.infos, added or [], removed or [], hw.new_event_id(), hw.now_ms())
    await st.send(names.hw_node_subject(st.node, names.HW_MEMBERSHIP_UPDATED), body)
