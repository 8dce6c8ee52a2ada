"""devicetwin's way to the cloud: twin reports (the whole twin, coalesced per device while
a flush runs) and rule events (each once: from the LMDB ``pending`` table, de-duplicated by
the firing id) into the node's outbox stream, which edgehub forwards."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from edgebus import clock, names
from edgebus.bus import Backoff, BusError
from edgebus.envelope import OP_UPDATE, Envelope
from edgebus.names import ObjectRef
from edgebus.objects import DEVICES
from services.devicetwin import shapes
from services.devicetwin.state import TwinState

log = logging.getLogger("edgebus.devicetwin")

REPORTS = Counter("edgebus_devicetwin_reports_total", "Twin reports stored in the outbox")


async def run(st: TwinState) -> None:
    """The ``upstream`` task: a flush each time ``TwinState.wake`` is set (with back-off
    while the outbox is not writable)."""
    backoff = Backoff(0.1, 5.0)
    st.wake.set()  # events left pending by a previous run
    while True:
        await st.wake.wait()
        st.wake.clear()
        try:
            await flush_events(st)
            await flush_reports(st)
            backoff.reset()
        except BusError as exc:
            delay = backoff.next()
            log.warning("outbox not writable (%s); retrying in %.1fs", exc, delay)
            st.wake.set()
            await asyncio.sleep(delay)
        if st.cfg.report_min_interval > 0:
            await asyncio.sleep(st.cfg.report_min_interval)


async def flush_events(st: TwinState) -> None:
    while True:
        pending = st.store.pending_events(256)
        if not pending:
            return
        done = []
        for ev in pending:
            env = Envelope.new(source="devicetwin", operation="event", resource=DEVICES.plural, content={"time": clock.now_ns(), "node": st.node, "event": ev}, id=ev["id"])
            ref = ObjectRef(DEVICES.plural, ev["namespace"], ev["device"])
            await st.bus.js_publish(names.outbox_subject(st.node, names.UP_EVENT, ref), env, stream=names.STREAM_EDGE_UP)
            done.append(int(ev["seq"]))
        st.store.done(done)


async def flush_reports(st: TwinState) -> None:
    keys = sorted(st.dirty)
    st.dirty.clear()
    for i, key in enumerate(keys):
        twin = st.twins.get(key)
        if twin is None or key not in st.infos:
            continue
        env = Envelope.new(source="devicetwin", operation=OP_UPDATE, resource=DEVICES.plural, content=shapes.status_report(twin, clock.now_ns()))
        try:
            await st.bus.js_publish(names.outbox_subject(st.node, names.UP_STATUS, ObjectRef(DEVICES.plural, key[0], key[1])), env, stream=names.STREAM_EDGE_UP)
        except BusError:
            st.dirty.update(keys[i:])
            raise
        REPORTS.inc()
