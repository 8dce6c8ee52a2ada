"""devicetwin's mirror of the node's Devices and DeviceModels: it follows them in
metamanager (change events for the fast path, a re-list every ``resync_interval``:
level-triggered; per-key revisions keep a re-list from undoing a newer event), keeps the
member devices (``TwinState.infos``) and adopts changed cloud desired values."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edgebus import names
from edgebus.bus import Backoff, BusError, BusMsg
from edgebus.devices import hw
from edgebus.envelope import Envelope
from edgebus.errors import ApiError, InvalidMessage
from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.objects.devices import device_model_name
from services.devicetwin import logic
from services.devicetwin.hw import membership_updated, publish_delta
from services.devicetwin.logic import Key
from services.devicetwin.state import TwinState

log = logging.getLogger("edgebus.devicetwin")


async def run(st: TwinState) -> None:
    """The ``meta-sync`` task: change events, and a re-list every ``resync_interval``
    (with back-off while metamanager does not answer)."""
    await st.bus.wait_connected()

    async def on_event(m: BusMsg) -> None:
        await on_meta_event(st, m)

    subs = [
        await st.bus.subscribe(names.meta_events_subject(st.node, DEVICES.plural), on_event),
        await st.bus.subscribe(names.meta_events_subject(st.node, DEVICEMODELS.plural), on_event),
    ]
    backoff = Backoff(0.2, 5.0)
    try:
        while True:
            try:
                await reconcile(st)
                backoff.reset()
                if not st.synced:
                    st.synced = True
                    log.info("synced: %d devices on node %s", len(st.infos), st.node)
                await asyncio.sleep(st.cfg.resync_interval)
            except (ApiError, BusError) as exc:
                delay = backoff.next()
                log.info("metamanager not answering (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
    finally:
        for unsub in subs:
            await unsub()


async def on_meta_event(st: TwinState, m: BusMsg) -> None:
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
        await apply_object(st, env.route.resource, (ns, name), obj if isinstance(obj, dict) else None, env.seq)
    except Exception:
        log.exception("applying %s %s/%s failed", env.route.resource, ns, name)


async def reconcile(st: TwinState) -> None:
    """One re-list of DeviceModels, then Devices: what is listed is applied, what is held
    but no longer listed is deleted."""
    for resource in (DEVICEMODELS.plural, DEVICES.plural):
        listing = await st.meta.list(resource)
        rev = int(listing.get("revision") or 0)
        seen: set[Key] = set()
        for item in listing.get("items") or []:
            obj = item.get("object") or {}
            md = obj.get("metadata") or {}
            key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
            seen.add(key)
            await apply_object(st, resource, key, obj, int(item.get("revision") or 0))
        table = st.devices if resource == DEVICES.plural else st.models
        for key in logic.vanished(table, seen, rev):
            await apply_object(st, resource, key, None, rev)


async def apply_object(st: TwinState, resource: str, key: Key, obj: dict[str, Any] | None, rev: int) -> None:
    table = st.devices if resource == DEVICES.plural else st.models if resource == DEVICEMODELS.plural else None
    if table is None:
        return
    entry, changed = logic.observe(table.get(key), obj, rev)
    if entry is not None:
        table[key] = entry
    if not changed:
        return
    if resource == DEVICES.plural:
        await refresh(st, key)
    else:
        for dk in logic.devices_of_model(st.devices, key):
            await refresh(st, dk)


async def refresh(st: TwinState, key: Key) -> None:
    """Bring device ``key``'s membership and twin level with its Device and DeviceModel."""
    dev = (st.devices.get(key) or (None, 0))[0]
    old = st.infos.get(key)
    if dev is None:
        if old is not None:
            del st.infos[key]
            st.twins.pop(key, None)
            st.store.commit(key, None)
            log.info("device %s/%s left node %s", *key, st.node)
            await membership_updated(st, removed=[key])
            st.changed(key)
        return
    model_name = device_model_name(dev)
    model = (st.models.get((key[0], model_name or "")) or (None, 0))[0]
    info = logic.DeviceInfo.build(dev, model)
    st.infos[key] = info
    twin = st.twins.setdefault(key, logic.new_twin())
    if model is None:
        logic.set_state(twin, "unknown", f"DeviceModel {model_name} is not on node {st.node} (yet)", hw.now_ms())
    changed, problems = logic.apply_cloud_desired(twin, info, hw.now_ms())
    for prop, why in problems.items():
        log.warning("device %s/%s: desired %s ignored: %s", key[0], key[1], prop, why)
    if changed:
        delta = logic.deltas(twin, info, changed)
        if delta:
            await publish_delta(st, info, twin, delta)
    st.store.commit(key, twin)
    st.mark(key)
    if old is None or old.device != info.device or old.model != info.model:
        log.info("device %s/%s %s on node %s", key[0], key[1], "joined" if old is None else "changed", st.node)
        await membership_updated(st, added=[key])
        st.changed(key)
