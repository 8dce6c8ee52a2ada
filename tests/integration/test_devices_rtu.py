"""Modbus RTU end to end over a pseudo-terminal pair (socat): pymodbus's serial server plays
the device on one end, the Modbus mapper reads and writes through the other. The Device is
written the way KubeEdge's demos write one: ``communicateMode: RTU``, settings as strings,
``parity: none`` (a pty refuses parity bits here: termios EINVAL), a one-register ``float`` scaled by 0.1, capitalised visitor keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebus.devices.simulators import ModbusThermostat
from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.testing.serial import SOCAT, PtyPair
from edgebus.testing.waiting import eventually

from .devicemesh import NODE, start_mesh

pytestmark = pytest.mark.skipif(SOCAT is None, reason="socat is not installed (./dev setup installs it as root)")

MODEL = {
    "metadata": {"name": "rtu-thermostat", "namespace": "default"},
    "spec": {
        "protocol": "modbus",
        "properties": [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
            {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "5", "maximum": "35"},
            {"name": "fan", "type": "BOOLEAN", "accessMode": "ReadWrite"},
        ],
    },
}


def device(tty: Path) -> dict:
    return {
        "metadata": {"name": "rtu-1", "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "rtu-thermostat"},
            "nodeName": NODE,
            "protocol": {
                "protocolName": "modbus",
                "configData": {"communicateMode": "RTU", "serialName": str(tty), "baudRate": "9600", "dataBits": "8", "parity": "none", "stopBits": "1", "slaveID": "1", "timeout": "500"},
            },
            "properties": [
                {"name": "temperature", "collectCycle": 100, "reportCycle": 1000, "visitors": {"protocolName": "modbus", "configData": {"register": "InputRegister", "offset": 0, "limit": 1, "dataType": "float", "scale": 0.1}}},
                {
                    "name": "setpoint",
                    "collectCycle": 100,
                    "desired": {"value": "19"},
                    "visitors": {"protocolName": "modbus", "configData": {"Register": "HoldingRegister", "Offset": "0", "Limit": "1", "Scale": "0.1", "DataType": "float"}},
                },
                {"name": "fan", "collectCycle": 100, "visitors": {"protocolName": "modbus", "configData": {"register": "CoilRegister", "offset": 0, "limit": 1, "dataType": "boolean"}}},
            ],
        },
    }


@pytest.fixture
def ptys(tmp_path: Path):
    p = PtyPair(tmp_path)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
async def sim(ptys):
    s = ModbusThermostat(serial_port=str(ptys.a), baudrate=9600, parity="N", temperature=21.5, setpoint=20.0, drift=False)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def mesh(cluster, tmp_path: Path):
    m = await start_mesh(cluster, tmp_path)
    try:
        yield m
    finally:
        await m.stop()


async def test_modbus_rtu_over_a_pty(mesh, sim, ptys) -> None:
    await eventually(mesh.node_ready, timeout=15, msg="edge-1 Ready")
    await mesh.store.create(DEVICEMODELS, MODEL)
    await mesh.store.create(DEVICES, device(ptys.b))
    # the desired value of the spec is written over the serial line (19 / 0.1 = 190 in the register)
    await eventually(lambda: sim.setpoint == 19.0, timeout=20, msg="setpoint written over RTU")
    await eventually(lambda: _eq(mesh.reported("rtu-1", "temperature"), "21.5"), timeout=20, msg="temperature read over RTU")
    await eventually(lambda: _eq(mesh.reported("rtu-1", "setpoint"), "19"), timeout=10, msg="setpoint read back")
    sim.temperature = 24.2
    await eventually(lambda: _eq(mesh.reported("rtu-1", "temperature"), "24.2"), timeout=10, msg="new temperature")
    await mesh.set_desired("rtu-1", "fan", "true")
    await eventually(lambda: sim.fan is True, timeout=10, msg="coil written over RTU")
    await eventually(lambda: _eq(mesh.reported("rtu-1", "fan"), "true"), timeout=10, msg="coil read back")
    dev = await mesh.store.get(DEVICES, "default", "rtu-1")
    assert dev["status"]["state"] == "online"


async def _eq(aw, want):
    return (await aw) == want
