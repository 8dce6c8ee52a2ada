"""KubeEdge's DMI: a mapper that speaks only the DMI protocol (``dmi_mapper.py``, its stubs
generated here from the interface definition, run as its own process) registers with
devicetwin over the DMI unix socket, receives its devices and their models, reports twins
and states; the twin values reach the cloud, a desired value set in the cloud reaches the
mapper, and devices added and removed later reach it too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgebus.dmi import stubs_available
from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.testing.waiting import eventually

from tests.dmi_support import PROTOCOL, RunningMapper

from .devicemesh import NODE, start_mesh

pytestmark = pytest.mark.skipif(not stubs_available(), reason="DMI stubs not generated (./dev setup)")

MODEL = {
    "metadata": {"name": "vthermo-model", "namespace": "default"},
    "spec": {
        "protocol": PROTOCOL,
        "properties": [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
            {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "5", "maximum": "30"},
        ],
    },
}


def device(name: str, setpoint: str = "18") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "vthermo-model"},
            "nodeName": NODE,
            "protocol": {"protocolName": PROTOCOL, "configData": {"room": "lab", "port": 5100, "gain": 0.5, "nested": {"a": 1}}},
            "properties": [
                {"name": "temperature", "reportCycle": 200, "reportToCloud": True, "visitors": {"protocolName": PROTOCOL, "configData": {"channel": 1}}},
                {"name": "setpoint", "desired": {"value": setpoint}, "reportToCloud": True, "visitors": {"protocolName": PROTOCOL, "configData": {"channel": 2}}},
            ],
        },
    }


@pytest.fixture
async def mesh(cluster, tmp_path: Path):
    m = await start_mesh(cluster, tmp_path, mappers=(), devicetwin={"dmi_resync": 0.5})
    try:
        yield m
    finally:
        await m.stop()


async def test_dmi_mapper_end_to_end(mesh, tmp_path: Path) -> None:
    await eventually(mesh.node_ready, timeout=15, msg="edge-1 Ready")
    await mesh.store.create(DEVICEMODELS, MODEL)
    await mesh.store.create(DEVICES, device("vthermo-1"))
    await eventually(lambda: _has_device(mesh), timeout=15, msg="devicetwin has the device")
    # socket activation: the DMI socket is there, but no gRPC server until a mapper connects
    bridge = mesh.services["devicetwin"].ctx.dmi
    sock = tmp_path / "dt" / "dmi.sock"
    await eventually(sock.is_socket, timeout=10, msg="the DMI socket is held")
    assert bridge.server is None, "gRPC started before any mapper connected"
    mapper = RunningMapper(tmp_path, sock, probe=True)
    try:
        await eventually(lambda: bridge.server is not None, timeout=20, msg="gRPC started by the first mapper's connection")
        # registration hands the mapper its device and model, configData typed
        st = await eventually(lambda: _when(mapper.read(), lambda s: "default/vthermo-1" in s.get("devices", {})), timeout=20, msg="mapper got its device")
        dev = st["devices"]["default/vthermo-1"]
        assert st["calls"][0] == "MapperRegister 1 devices" and st["models"] == {"default/vthermo-model": ["temperature", "setpoint"]}
        assert dev["protocolConfig"] == {"room": "lab", "port": 5100, "gain": 0.5, "nested": '{"a":1}'}
        assert dev["visitors"] == {"temperature": {"channel": 1}, "setpoint": {"channel": 2}}
        assert dev["desired"]["setpoint"] == "18" and dev["desiredMetadata"]["setpoint"]["type"] == "float"
        # bad reports get an error code each, and break nothing
        assert st["probes"] == {"unknown-device": "NOT_FOUND", "no-twins": "INVALID_ARGUMENT", "bad-state": "INVALID_ARGUMENT", "unknown-state-device": "NOT_FOUND", "bad-value": "OK"}

        # twins reported over DMI reach the cloud, with the state the mapper reports
        await eventually(lambda: _reported(mesh, "vthermo-1", "setpoint", "18"), timeout=20, msg="reported setpoint in the cloud")
        temp = await eventually(lambda: _reported(mesh, "vthermo-1", "temperature"), timeout=10, msg="temperature in the cloud")
        assert float(temp) > 20
        # the state is its own report (ReportDeviceStates), so it may land after the twins
        status = await eventually(lambda: _state(mesh, "vthermo-1"), timeout=10, msg="device state in the cloud")
        assert status["state"] == "ok" and status["lastOnlineTime"]

        # a desired value set in the cloud reaches the mapper (UpdateDevice), which writes it
        await mesh.set_desired("vthermo-1", "setpoint", "24.5")
        await eventually(lambda: _when(mapper.read(), lambda s: s["devices"]["default/vthermo-1"]["desired"]["setpoint"] == "24.5"), timeout=15, msg="desired value at the mapper")
        assert any(c == "UpdateDevice default/vthermo-1" for c in mapper.read()["calls"])
        await eventually(lambda: _reported(mesh, "vthermo-1", "setpoint", "24.5"), timeout=15, msg="written value reported back")

        # devices added and removed later reach the mapper
        await mesh.store.create(DEVICES, device("vthermo-2", "12"))
        await eventually(lambda: _when(mapper.read(), lambda s: "default/vthermo-2" in s["devices"]), timeout=15, msg="second device registered")
        await eventually(lambda: _reported(mesh, "vthermo-2", "setpoint", "12"), timeout=15, msg="second device reports")
        await mesh.store.delete(DEVICES, "default", "vthermo-1")
        await eventually(lambda: _when(mapper.read(), lambda s: "default/vthermo-1" not in s["devices"]), timeout=15, msg="device removed at the mapper")
        assert "RegisterDevice default/vthermo-2" in mapper.read()["calls"] and "RemoveDevice default/vthermo-1" in mapper.read()["calls"]
        assert mesh.services["devicetwin"].health()["ok"]
    finally:
        mapper.stop()


def _when(v: Any, pred: Any) -> Any:
    try:
        return v if v and pred(v) else None
    except (KeyError, TypeError):
        return None


async def _has_device(mesh) -> bool:
    return "default/vthermo-1" in (await mesh.twins())["devices"]


async def _state(mesh, dev: str) -> dict[str, Any] | None:
    st = (await mesh.store.get(DEVICES, "default", dev)).get("status") or {}
    return st if st.get("state") else None


async def _reported(mesh, dev: str, prop: str, want: str | None = None) -> str | None:
    v = await mesh.reported(dev, prop)
    if want is None:
        return v
    return v if v is not None and float(v) == float(want) else None
