"""OPC-UA end to end: a real asyncua server, the opcua mapper (subscriptions), devicetwin,
and the cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebus.devices.simulators import OpcuaThermostat
from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.testing.waiting import eventually

from .devicemesh import NODE, free_ports, start_mesh

MODEL = {
    "metadata": {"name": "opcua-thermostat", "namespace": "default"},
    "spec": {
        "protocol": "opcua",
        "properties": [
            {"name": "temperature", "type": "DOUBLE", "accessMode": "ReadOnly"},
            {"name": "setpoint", "type": "DOUBLE", "accessMode": "ReadWrite", "minimum": "5", "maximum": "35"},
            {"name": "fan", "type": "BOOLEAN", "accessMode": "ReadWrite"},
        ],
    },
}


def device(url: str) -> dict:
    def prop(name: str) -> dict:
        return {"name": name, "collectCycle": 200, "visitors": {"protocolName": "opcua", "configData": {"nodeID": f"ns=2;s={name.capitalize()}"}}}

    return {
        "metadata": {"name": "ua-thermostat", "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "opcua-thermostat"},
            "nodeName": NODE,
            "protocol": {"protocolName": "opcua", "configData": {"url": url, "publishingInterval": 50}},
            "properties": [prop("temperature"), prop("setpoint"), prop("fan")],
            "rules": [{"name": "fan-on", "when": "temperature >= 30", "set": {"fan": "true"}}],
        },
    }


@pytest.fixture
async def mesh(cluster, tmp_path: Path):
    m = await start_mesh(cluster, tmp_path, mappers=("mappers.opcua",))
    try:
        yield m
    finally:
        await m.stop()


@pytest.fixture
async def sim():
    (port,) = free_ports(1)
    s = OpcuaThermostat(port=port, temperature=21.25, setpoint=20.0, drift=False, tick=0.1)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def _eq(aw, want):
    return (await aw) == want


@pytest.mark.leaks_tasks("asyncua's server (the test's device) leaves its session loops behind when it stops")
async def test_opcua_values_reach_cloud_and_desired_reaches_node(mesh, sim) -> None:
    await eventually(mesh.node_ready, timeout=15, msg="edge-1 Ready")
    await mesh.store.create(DEVICEMODELS, MODEL)
    await mesh.store.create(DEVICES, device(sim.url))
    await eventually(lambda: _eq(mesh.reported("ua-thermostat", "temperature"), "21.25"), timeout=20, msg="temperature in cloud")

    await sim.set_temperature(25.5)  # pushed by the OPC-UA subscription
    await eventually(lambda: _eq(mesh.reported("ua-thermostat", "temperature"), "25.5"), timeout=10, msg="temperature change in cloud")

    await mesh.set_desired("ua-thermostat", "setpoint", "23.5")
    await eventually(lambda: _eq(sim.read("Setpoint"), 23.5), timeout=10, msg="setpoint node written")
    await eventually(lambda: _eq(mesh.reported("ua-thermostat", "setpoint"), "23.5"), timeout=10, msg="setpoint reported")

    await sim.set_temperature(30.0)  # the local rule writes the Fan node
    await eventually(lambda: _eq(sim.read("Fan"), True), timeout=10, msg="fan node written by the rule")
    dev = await mesh.store.get(DEVICES, "default", "ua-thermostat")
    assert dev["status"]["state"] == "online"
