"""devicetwin: the node's device twins, KubeEdge's ``$hw`` topics, and local rules.

* ``hw`` subscribes (core NATS, what nats-server's MQTT listener maps MQTT topics to) to
  ``twin/update``, ``twin/get``, ``state/update`` of every device and to the node's
  ``membership/get``; it answers on the ``.../result`` topics and sends
  ``twin/update/delta`` when a desired value changes.
* ``meta-sync`` follows the node's Devices and DeviceModels in metamanager (change events
  plus a periodic re-list: level-triggered) and adopts changed cloud desired values.
* ``upstream`` publishes twin reports (coalesced per device) and rule events (each once,
  de-duplicated by its id) into the node's outbox, which edgehub forwards to the cloud.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram

from edgebus import names, topology
from edgebus.bus import Backoff, Bus, BusError, BusMsg, Message, Router
from edgebus.devices import hw
from edgebus.envelope import OP_UPDATE, Envelope
from edgebus.errors import ApiError, InvalidMessage
from edgebus.metaclient import MetaClient
from edgebus.names import ObjectRef
from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.objects.devices import device_model_name
from edgebus.runtime import Service, setup_logging
from services.devicetwin import logic
from services.devicetwin.config import Settings
from services.devicetwin.store import TwinStore

log = logging.getLogger("edgebus.devicetwin")

HW_MESSAGES = Counter("edgebus_devicetwin_messages_total", "$hw messages handled", ["topic", "outcome"])
RULE_FIRINGS = Counter("edgebus_devicetwin_rule_firings_total", "Local rule firings", ["rule"])
HANDLE_SECONDS = Histogram(
    "edgebus_devicetwin_update_seconds", "twin/update handling time (to delta published)", buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)
)
REPORTS = Counter("edgebus_devicetwin_reports_total", "Twin reports stored in the outbox")

Key = tuple[str, str]


class DeviceTwin:
    def __init__(self, settings: Settings) -> None:
        assert settings.node
        self.settings = settings
        self.node = settings.node
        self.cfg = settings.devicetwin
        self.router: Router[DeviceTwin] = Router("devicetwin")
        self.svc: Service[DeviceTwin] = Service("devicetwin", settings, router=self.router)
        self.svc.ctx = self
        self.store = TwinStore(Path(self.cfg.data_dir))
        self.twins: dict[Key, dict[str, Any]] = self.store.load()
        self.infos: dict[Key, logic.DeviceInfo] = {}
        self.devices: dict[Key, tuple[dict[str, Any] | None, int]] = {}
        self.models: dict[Key, tuple[dict[str, Any] | None, int]] = {}
        self.dirty: set[Key] = set()
        self.wake = asyncio.Event()
        self.synced = False
        self.firings = 0
        self.meta = MetaClient(self.svc.bus, self.node, timeout=5.0, source="devicetwin")
        self.router.reply(names.devicetwin_subject(self.node, "twins"), name="twins")(self._api_twins)
        self.router.reply(names.devicetwin_subject(self.node, "events"), name="events")(self._api_events)
        self.svc.on_start(self._ensure_streams)
        self.svc.on_stop(self._close)
        self.svc.task("hw", self._hw)
        self.svc.task("meta-sync", self._meta_sync)
        self.svc.task("upstream", self._upstream)
        self.svc.readiness_check("synced", lambda: self.synced)

    @property
    def bus(self) -> Bus:
        return self.svc.bus

    async def _ensure_streams(self, _: Service[Any]) -> None:
        await topology.ensure_edge_streams(self.bus, self.node, self.settings.cloud_domain)

    async def _close(self, _: Service[Any]) -> None:
        self.store.close()

    # -- local API ----------------------------------------------------------------------
    async def _api_twins(self, m: Message, _: DeviceTwin) -> dict[str, Any]:
        out = {}
        for key, info in self.infos.items():
            twin = self.twins.get(key) or logic.new_twin()
            out[f"{key[0]}/{key[1]}"] = {"twin": logic.msg_twin(twin, info), "state": twin.get("state"), "stateReason": twin.get("stateReason", ""), "rules": twin.get("rules", {})}
        return {"node": self.node, "devices": out, "firings": self.firings}

    async def _api_events(self, m: Message, _: DeviceTwin) -> dict[str, Any]:
        c = m.env.content if isinstance(m.env.content, dict) else {}
        limit = c.get("limit", 1000)
        return {"events": self.store.recent_events(limit if isinstance(limit, int) and limit > 0 else 1000), "pending": len(self.store.pending_events(10_000))}

    # -- $hw topics ---------------------------------------------------------------------
    async def _hw(self) -> None:
        await self.bus.wait_connected()
        subs = [
            await self.bus.subscribe(names.hw_device_filter(names.HW_TWIN_UPDATE), self._guard("twin/update", self._on_twin_update)),
            await self.bus.subscribe(names.hw_device_filter(names.HW_TWIN_GET), self._guard("twin/get", self._on_twin_get)),
            await self.bus.subscribe(names.hw_device_filter(names.HW_STATE_UPDATE), self._guard("state/update", self._on_state_update)),
            await self.bus.subscribe(names.hw_node_subject(self.node, names.HW_MEMBERSHIP_GET), self._guard("membership/get", self._on_membership_get)),
        ]
        try:
            await asyncio.Event().wait()
        finally:
            for unsub in subs:
                await unsub()

    def _guard(self, topic: str, fn: Any) -> Any:
        async def run(m: BusMsg) -> None:
            try:
                await fn(m)
            except Exception:  # one bad message never stops the subscription
                HW_MESSAGES.labels(topic, "failed").inc()
                log.exception("%s handler failed on %s", topic, m.subject)

        return run

    async def _send(self, subject: str, body: dict[str, Any]) -> None:
        try:
            await self.bus.publish(subject, hw.dumps(body))
        except BusError as exc:
            log.debug("publish %s failed: %s", subject, exc)

    def _device(self, subject: str) -> tuple[Key, logic.DeviceInfo | None]:
        ns, name, _ = names.parse_hw_device_subject(subject)
        return (ns, name), self.infos.get((ns, name))

    def _not_member(self, key: Key) -> str:
        return f"device {key[0]}/{key[1]} is not a member of node {self.node}"

    async def _on_twin_update(self, m: BusMsg) -> None:
        t0 = time.perf_counter()
        try:
            key, info = self._device(m.subject)
        except names.InvalidName:
            HW_MESSAGES.labels("twin/update", "rejected").inc()
            return
        result = names.hw_device_subject(key[0], key[1], names.HW_TWIN_RESULT)
        try:
            msg = hw.loads(m.data)
            if info is None:
                raise InvalidMessage(self._not_member(key))
            actual, expected, errors = hw.reported_values(msg)
        except InvalidMessage as exc:
            HW_MESSAGES.labels("twin/update", "rejected").inc()
            await self._send(result, hw.error_result(_event_id(m.data), str(exc)))
            return
        eid = hw.event_id_of(msg)
        twin = self.twins.setdefault(key, logic.new_twin())
        out = logic.Applied(errors=dict(errors))
        now = hw.now_ms()
        logic.apply_reported(twin, info, actual, out)
        firings, rule_desired = logic.evaluate_rules(twin, info, out.reported, now, trigger=eid)
        logic.apply_expected(twin, info, expected, now, out)
        changed = rule_desired + [p for p in out.desired if p not in rule_desired]
        if changed:
            delta = logic.deltas(twin, info, changed)
            if delta:
                await self._publish_delta(info, twin, delta, trigger=eid, rules=[f.rule for f in firings])
        HANDLE_SECONDS.observe(time.perf_counter() - t0)
        records = [f.record() for f in firings]
        if out.reported or out.desired or records:
            self.store.commit(key, twin, records)
            self._mark(key)
        for f in firings:
            RULE_FIRINGS.labels(f.rule).inc()
            self.firings += 1
            log.info("rule fired on %s/%s: %s (event %s)", f.namespace, f.device, f.message(), f.id)
        accepted = {k: v for k, v in logic.msg_twin(twin, info).items() if (k in actual or k in expected) and k not in out.errors}
        HW_MESSAGES.labels("twin/update", "error" if out.errors else "ok").inc()
        await self._send(result, hw.result(eid, twin=accepted, errors=out.errors))

    async def _publish_delta(self, info: logic.DeviceInfo, twin: dict[str, Any], delta: dict[str, str], *, trigger: str = "", rules: list[str] | None = None) -> None:
        body = {"event_id": hw.new_event_id(), "timestamp": hw.now_ms(), "twin": logic.msg_twin(twin, info), "delta": delta}
        if trigger or rules:
            body["trigger"] = {"event_id": trigger, "rules": rules or []}
        await self._send(names.hw_device_subject(info.namespace, info.name, names.HW_TWIN_DELTA), body)

    async def _on_twin_get(self, m: BusMsg) -> None:
        try:
            key, info = self._device(m.subject)
        except names.InvalidName:
            return
        subject = names.hw_device_subject(key[0], key[1], names.HW_TWIN_GET_RESULT)
        eid = _event_id(m.data)
        if info is None:
            HW_MESSAGES.labels("twin/get", "rejected").inc()
            await self._send(subject, hw.error_result(eid, self._not_member(key), 404))
            return
        HW_MESSAGES.labels("twin/get", "ok").inc()
        await self._send(subject, hw.result(eid, twin=logic.msg_twin(self.twins.get(key) or logic.new_twin(), info)))

    async def _on_state_update(self, m: BusMsg) -> None:
        try:
            key, info = self._device(m.subject)
        except names.InvalidName:
            return
        subject = names.hw_device_subject(key[0], key[1], names.HW_STATE_RESULT)
        try:
            msg = hw.loads(m.data)
            if info is None:
                raise InvalidMessage(self._not_member(key))
            state = msg.get("state")
            if state not in logic.STATES:
                raise InvalidMessage(f"state must be one of {', '.join(logic.STATES)}, got {state!r}")
            reason = msg.get("reason") if isinstance(msg.get("reason"), str) else ""
        except InvalidMessage as exc:
            HW_MESSAGES.labels("state/update", "rejected").inc()
            await self._send(subject, hw.error_result(_event_id(m.data), str(exc)))
            return
        twin = self.twins.setdefault(key, logic.new_twin())
        if logic.set_state(twin, state, reason[:500], hw.ts_of(msg.get("timestamp"), hw.now_ms())):
            self.store.commit(key, twin)
            self._mark(key)
            log.info("device %s/%s is %s%s", key[0], key[1], state, f" ({reason})" if reason else "")
        HW_MESSAGES.labels("state/update", "ok").inc()
        await self._send(subject, {"event_id": hw.event_id_of(msg), "timestamp": hw.now_ms(), "state": twin["state"]})

    async def _on_membership_get(self, m: BusMsg) -> None:
        HW_MESSAGES.labels("membership/get", "ok").inc()
        await self._send(names.hw_node_subject(self.node, names.HW_MEMBERSHIP_RESULT), self.membership(_event_id(m.data)))

    def membership(self, event_id: str = "") -> dict[str, Any]:
        devices = [logic.membership_entry(self.twins.get(k) or logic.new_twin(), info) for k, info in sorted(self.infos.items())]
        return {"event_id": event_id, "timestamp": hw.now_ms(), "devices": devices}

    # -- desired state from metamanager ---------------------------------------------------
    async def _meta_sync(self) -> None:
        await self.bus.wait_connected()
        subs = [
            await self.bus.subscribe(names.meta_events_subject(self.node, DEVICES.plural), self._on_meta_event),
            await self.bus.subscribe(names.meta_events_subject(self.node, DEVICEMODELS.plural), self._on_meta_event),
        ]
        backoff = Backoff(0.2, 5.0)
        try:
            while True:
                try:
                    await self.reconcile()
                    backoff.reset()
                    if not self.synced:
                        self.synced = True
                        log.info("synced: %d devices on node %s", len(self.infos), self.node)
                    await asyncio.sleep(self.cfg.resync_interval)
                except (ApiError, BusError) as exc:
                    delay = backoff.next()
                    log.info("metamanager not answering (%s); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
        finally:
            for unsub in subs:
                await unsub()

    async def _on_meta_event(self, m: BusMsg) -> None:
        try:
            env = Envelope.decode(m.data)
        except InvalidMessage:
            return
        c = env.content if isinstance(env.content, dict) else {}
        ns, name = c.get("namespace"), c.get("name")
        if not isinstance(ns, str) or not isinstance(name, str):
            return
        obj = c.get("object") if c.get("type") != "DELETED" else None
        try:
            await self.apply_object(env.route.resource, (ns, name), obj if isinstance(obj, dict) else None, env.seq)
        except Exception:
            log.exception("applying %s %s/%s failed", env.route.resource, ns, name)

    async def reconcile(self) -> None:
        for resource in (DEVICEMODELS.plural, DEVICES.plural):
            listing = await self.meta.list(resource)
            rev = int(listing.get("revision") or 0)
            seen: set[Key] = set()
            for item in listing.get("items") or []:
                obj = item.get("object") or {}
                md = obj.get("metadata") or {}
                key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
                seen.add(key)
                await self.apply_object(resource, key, obj, int(item.get("revision") or 0))
            table = self.devices if resource == DEVICES.plural else self.models
            for key, (obj, r) in list(table.items()):
                if key not in seen and obj is not None and r <= rev:
                    await self.apply_object(resource, key, None, rev)

    async def apply_object(self, resource: str, key: Key, obj: dict[str, Any] | None, rev: int) -> None:
        table = self.devices if resource == DEVICES.plural else self.models if resource == DEVICEMODELS.plural else None
        if table is None:
            return
        cur = table.get(key)
        if cur is not None and cur[1] > rev:
            return  # an older view (a re-list racing a change event)
        if cur is not None and cur[0] == obj:
            table[key] = (obj, max(rev, cur[1]))
            return
        table[key] = (obj, rev)
        if resource == DEVICES.plural:
            await self._refresh(key)
        else:
            for dk, (dev, _) in list(self.devices.items()):
                if dev is not None and dk[0] == key[0] and device_model_name(dev) == key[1]:
                    await self._refresh(dk)

    async def _refresh(self, key: Key) -> None:
        dev = (self.devices.get(key) or (None, 0))[0]
        old = self.infos.get(key)
        if dev is None:
            if old is not None:
                del self.infos[key]
                self.twins.pop(key, None)
                self.store.commit(key, None)
                log.info("device %s/%s left node %s", *key, self.node)
                await self._membership_updated(removed=[key])
            return
        model_name = device_model_name(dev)
        model = (self.models.get((key[0], model_name or "")) or (None, 0))[0]
        info = logic.DeviceInfo.build(dev, model)
        self.infos[key] = info
        twin = self.twins.setdefault(key, logic.new_twin())
        if model is None:
            logic.set_state(twin, "unknown", f"DeviceModel {model_name} is not on node {self.node} (yet)", hw.now_ms())
        changed, problems = logic.apply_cloud_desired(twin, info, hw.now_ms())
        for prop, why in problems.items():
            log.warning("device %s/%s: desired %s ignored: %s", key[0], key[1], prop, why)
        if changed:
            delta = logic.deltas(twin, info, changed)
            if delta:
                await self._publish_delta(info, twin, delta)
        self.store.commit(key, twin)
        self._mark(key)
        if old is None or old.device != info.device or old.model != info.model:
            log.info("device %s/%s %s on node %s", key[0], key[1], "joined" if old is None else "changed", self.node)
            await self._membership_updated(added=[key])

    async def _membership_updated(self, added: list[Key] = (), removed: list[Key] = ()) -> None:  # type: ignore[assignment]
        body = {
            "event_id": hw.new_event_id(),
            "timestamp": hw.now_ms(),
            "added_devices": [logic.membership_entry(self.twins.get(k) or logic.new_twin(), self.infos[k]) for k in added if k in self.infos],
            "removed_devices": [{"id": k[1], "name": k[1], "namespace": k[0]} for k in removed],
        }
        await self._send(names.hw_node_subject(self.node, names.HW_MEMBERSHIP_UPDATED), body)

    # -- upstream ---------------------------------------------------------------------------
    def _mark(self, key: Key) -> None:
        self.dirty.add(key)
        self.wake.set()

    async def _upstream(self) -> None:
        backoff = Backoff(0.1, 5.0)
        self.wake.set()  # events left pending by a previous run
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self._flush_events()
                await self._flush_reports()
                backoff.reset()
            except BusError as exc:
                delay = backoff.next()
                log.warning("outbox not writable (%s); retrying in %.1fs", exc, delay)
                self.wake.set()
                await asyncio.sleep(delay)
            if self.cfg.report_min_interval > 0:
                await asyncio.sleep(self.cfg.report_min_interval)

    async def _flush_events(self) -> None:
        while True:
            pending = self.store.pending_events(256)
            if not pending:
                return
            done = []
            for ev in pending:
                env = Envelope.new(source="devicetwin", operation="event", resource=DEVICES.plural, content={"time": time.time_ns(), "node": self.node, "event": ev}, id=ev["id"])
                ref = ObjectRef(DEVICES.plural, ev["namespace"], ev["device"])
                await self.bus.js_publish(names.outbox_subject(self.node, names.UP_EVENT, ref), env, stream=names.STREAM_EDGE_UP)
                done.append(int(ev["seq"]))
            self.store.done(done)

    async def _flush_reports(self) -> None:
        keys = sorted(self.dirty)
        self.dirty.clear()
        for i, key in enumerate(keys):
            twin = self.twins.get(key)
            if twin is None or key not in self.infos:
                continue
            env = Envelope.new(source="devicetwin", operation=OP_UPDATE, resource=DEVICES.plural, content=logic.status_report(twin, time.time_ns()))
            try:
                await self.bus.js_publish(names.outbox_subject(self.node, names.UP_STATUS, ObjectRef(DEVICES.plural, key[0], key[1])), env, stream=names.STREAM_EDGE_UP)
            except BusError:
                self.dirty.update(keys[i:])
                raise
            REPORTS.inc()


def _event_id(data: bytes) -> str:
    try:
        return hw.event_id_of(hw.loads(data))
    except InvalidMessage:
        return ""


def build(settings: Settings | None = None) -> Service[DeviceTwin]:
    settings = settings or Settings()
    if not settings.node:
        raise SystemExit("devicetwin needs EDGEBUS_NODE (the name of this edge node)")
    return DeviceTwin(settings).svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("devicetwin", settings)
    run(lambda: build(settings))


__all__ = ["DeviceTwin", "build", "main"]
