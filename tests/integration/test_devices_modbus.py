"""Modbus end to end: a real pymodbus device, the modbus mapper, devicetwin, and the cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebus.devices.simulators import ModbusThermostat
from edgebus.objects import DEVICES, EVENTS
from edgebus.testing.waiting import eventually

from .devicemesh import apply_model, free_ports, modbus_device, start_mesh


@pytest.fixture
async def mesh(cluster, tmp_path: Path):
    m = await start_mesh(cluster, tmp_path)
    try:
        yield m
    finally:
        await m.stop()


@pytest.fixture
async def sim():
    (port,) = free_ports(1)
    s = ModbusThermostat(port=port, temperature=21.5, setpoint=20.0, drift=False)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def test_reported_values_reach_cloud_and_desired_reaches_register(mesh, sim) -> None:
    await eventually(mesh.node_ready, timeout=15, msg="edge-1 Ready")
    await apply_model(mesh.store)
    await mesh.store.create(DEVICES, modbus_device("thermostat", sim.port))

    async def online():
        dev = await mesh.store.get(DEVICES, "default", "thermostat")
        st = dev.get("status") or {}
        return st.get("state") == "online" and dev

    await eventually(lambda: _eq(mesh.reported("thermostat", "temperature"), "21.5"), timeout=15, msg="temperature in cloud status")
    dev = await eventually(online, timeout=10, msg="state online")
    tw = {t["propertyName"]: t for t in dev["status"]["twins"]}
    assert tw["temperature"]["reported"]["metadata"]["type"] == "float"  # the type the mapper reported
    assert int(tw["temperature"]["reported"]["metadata"]["timestamp"]) > 0
    assert dev["status"]["lastOnlineTime"]
    assert tw["fan"]["reported"]["value"] == "false"

    # the device changes: the cloud follows
    sim.temperature = 23.7
    await eventually(lambda: _eq(mesh.reported("thermostat", "temperature"), "23.7"), timeout=10, msg="new temperature in cloud")

    # a desired value: written to the holding register, reported back, observed in status
    await mesh.set_desired("thermostat", "setpoint", "22.5")
    await eventually(lambda: sim.setpoint == 22.5, timeout=10, msg="setpoint register written")
    await eventually(lambda: _eq(mesh.reported("thermostat", "setpoint"), "22.5"), timeout=10, msg="setpoint reported")

    async def observed():
        dev = await mesh.store.get(DEVICES, "default", "thermostat")
        for t in dev["status"]["twins"]:
            if t["propertyName"] == "setpoint":
                return (t.get("observedDesired") or {}).get("value") == "22.5" and t["observedDesired"]["metadata"]["source"] == "cloud"
        return False

    await eventually(observed, timeout=10, msg="observedDesired recorded")

    # the local rule: above 30 the fan goes on (on the edge), the firing becomes an Event
    sim.temperature = 31.0
    await eventually(lambda: sim.fan is True, timeout=5, msg="fan switched on by the rule")
    await eventually(lambda: _eq(mesh.reported("thermostat", "fan"), "true"), timeout=10, msg="fan reported on")

    async def events():
        items, _ = await mesh.store.list(EVENTS, "default")
        return [e for e in items if e["reason"] == "RuleFired" and e["metadata"]["annotations"]["edgebus.io/rule"] == "fan-on"]

    evs = await eventually(events, timeout=10, msg="rule event in the cloud")
    assert evs[0]["involvedObject"]["name"] == "thermostat"
    assert evs[0]["message"] == "rule fan-on: temperature is 31: set fan = true"


async def _eq(aw, want):
    return (await aw) == want


async def test_device_faults_make_it_unhealthy_and_keep_the_last_good_value(mesh, sim) -> None:
    await eventually(mesh.node_ready, timeout=15, msg="edge-1 Ready")
    await apply_model(mesh.store)
    await mesh.store.create(DEVICES, modbus_device("thermostat", sim.port, rules=False))
    await eventually(lambda: _eq(mesh.reported("thermostat", "temperature"), "21.5"), timeout=15, msg="first value in cloud")

    async def status():
        return (await mesh.store.get(DEVICES, "default", "thermostat")).get("status") or {}

    async def state(want: str, fragment: str = ""):
        st = await status()
        return st.get("state") == want and fragment in st.get("stateReason", "") and st

    sim.fail_code = 4  # every request answered with "server device failure"
    st = await eventually(lambda: state("unhealthy", "Modbus exception 4"), timeout=10, msg="unhealthy on Modbus exceptions")
    assert "server device failure" in st["stateReason"]
    assert await mesh.reported("thermostat", "temperature") == "21.5"  # the last good value stays

    sim.fail_code = 0
    sim.temperature = 22.0
    await eventually(lambda: state("online"), timeout=10, msg="online again")
    await eventually(lambda: _eq(mesh.reported("thermostat", "temperature"), "22"), timeout=10, msg="new value after recovery")

    sim.delay = 1.0  # slower than the device's 0.5 s timeout
    await eventually(lambda: state("unhealthy", "no answer"), timeout=15, msg="unhealthy on timeouts")
    sim.delay = 0.0
    await eventually(lambda: state("online"), timeout=15, msg="online after timeouts")
    assert mesh.services["mappers.modbus"].health()["ok"] and mesh.services["devicetwin"].health()["ok"]
