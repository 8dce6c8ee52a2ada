"""Offline: cut the node's cloud link, change the device 100 times (the local rule fires and
switches the fan on the edge meanwhile), heal: the cloud ends with the latest reported values
and every rule event exactly once."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import aclosing
from pathlib import Path

import pytest

from edgebus import names
from edgebus.bus import CaughtUp, read_stream
from edgebus.devices.simulators import ModbusThermostat
from edgebus.envelope import Envelope
from edgebus.objects import DEVICES, EVENTS
from edgebus.testing.waiting import eventually

from .devicemesh import apply_model, free_ports, modbus_device, start_mesh


@pytest.fixture
async def mesh(cluster, tmp_path: Path):
    m = await start_mesh(cluster, tmp_path, via_proxy=True)
    try:
        yield m
    finally:
        await m.stop()


@pytest.fixture
async def sim():
    (port,) = free_ports(1)
    s = ModbusThermostat(port=port, temperature=25.0, drift=False)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def _eq(aw, want):
    return (await aw) == want


async def link(mesh) -> str:
    env = Envelope.new(source="test", operation="query", content={})
    return (await mesh.edge.call(names.edgehub_subject("edge-1", "state"), env)).content["link"]


async def cloud_event_ids(mesh) -> Counter[str]:
    """Every rule event EDGEBUS_UP holds for edge-1, by event id (exactly once means 1 each)."""
    seen: Counter[str] = Counter()
    subject = names.up_kind_filter(names.UP_EVENT, DEVICES.plural)
    async with aclosing(read_stream(mesh.cloud, names.STREAM_UP, subject, stop_when_caught_up=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            seen[Envelope.decode(m.data).content["event"]["id"]] += 1
    return seen


async def test_offline_changes_and_rule_events_reach_cloud_exactly_once(mesh, sim) -> None:
    await eventually(mesh.node_ready, timeout=15, msg="edge-1 Ready")
    await apply_model(mesh.store)
    await mesh.store.create(DEVICES, modbus_device("thermostat", sim.port, collect=20))
    await eventually(lambda: _eq(mesh.reported("thermostat", "temperature"), "25"), timeout=15, msg="first report in cloud")

    mesh.leaf.proxy.cut()
    await eventually(lambda: _eq(link(mesh), "down"), timeout=15, msg="edgehub sees the link down")
    cut_at = time.time()
    fan_switches = 0
    last = None
    for i in range(100):
        value = round(25.0 + (i % 10) + (i // 10) / 10, 1)  # 25 .. 34.x, ten times: crosses 30 and 28
        sim.temperature = value
        last = f"{value:g}"
        await eventually(lambda: _eq(mesh.edge_value("thermostat", "temperature"), last), timeout=5, interval=0.01, msg=f"edge read {last}")
        if i % 10 == 6:  # just went above 30: the local rule switched the fan on, offline
            await eventually(lambda: sim.fan is True, timeout=2, interval=0.01, msg="fan on (offline)")
            fan_switches += 1
    assert fan_switches == 10
    assert all(t > cut_at for t, what, _ in sim.writes if what == "fan")
    edge_events = await mesh.edge_events()
    assert len([e for e in edge_events if e["rule"] == "fan-on"]) == 10
    assert await mesh.reported("thermostat", "temperature") == "25"  # the cloud saw nothing yet

    mesh.leaf.proxy.heal()
    await eventually(lambda: _eq(mesh.reported("thermostat", "temperature"), last), timeout=30, msg="latest value in cloud after heal")
    want = {e["id"] for e in edge_events}

    async def all_events():
        items, _ = await mesh.store.list(EVENTS, "default")
        # the rule events (the node's lifecycle records its own Events in the namespace too)
        ids = ((e["metadata"].get("annotations") or {}).get("edgebus.io/event-id") for e in items)
        got = {i for i in ids if i}
        return want <= got and got

    got = await eventually(all_events, timeout=30, msg="every rule event in the cloud")
    assert got == want
    up = await cloud_event_ids(mesh)
    assert set(up) == want and set(up.values()) == {1}, "each rule event reached EDGEBUS_UP exactly once"
    dev = await mesh.store.get(DEVICES, "default", "thermostat")
    fan = next(t for t in dev["status"]["twins"] if t["propertyName"] == "fan")
    assert fan["observedDesired"]["metadata"]["source"].startswith("rule:")
