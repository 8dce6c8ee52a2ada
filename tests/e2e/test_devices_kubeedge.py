"""KubeEdge mappers against a real lab node (every process its own, `edgebus up`'s plan): a
mapper written from KubeEdge's MQTT topic table and message types, and a mapper that speaks
only DMI (gRPC on the node's DMI socket). For each, the twin value it reports is visible in
the cloud and a desired value set in the cloud is delivered back to it."""

from __future__ import annotations

import time

import pytest

from edgebus.dmi import stubs_available
from edgebus.errors import Conflict
from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.testing.waiting import eventually
from tests.dmi_support import PROTOCOL, RunningMapper
from tests.integration.kubeedge_clients import MqttClient

from .conftest import RunningLab

pytestmark = pytest.mark.e2e

NODE = "edge-1"


def model(name: str, protocol: str) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "protocol": protocol,
            "properties": [
                {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
                {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "5", "maximum": "30"},
            ],
        },
    }


def device(name: str, model_name: str, protocol: str, setpoint: str) -> dict:
    return {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": model_name},
            "nodeName": NODE,
            "protocol": {"protocolName": protocol},
            "properties": [
                {"name": "temperature", "reportToCloud": True, "visitors": {"protocolName": protocol, "configData": {"channel": 1}}},
                {"name": "setpoint", "desired": {"value": setpoint}, "reportToCloud": True, "visitors": {"protocolName": protocol, "configData": {"channel": 2}}},
            ],
        },
    }


async def reported(lab: RunningLab, name: str, prop: str) -> str | None:
    dev = await lab.store.get(DEVICES, "default", name)
    for t in (dev.get("status") or {}).get("twins") or []:
        if t.get("propertyName") == prop:
            return (t.get("reported") or {}).get("value")
    return None


async def set_desired(lab: RunningLab, name: str, prop: str, value: str) -> None:
    def change(obj: dict) -> dict:
        for p in obj["spec"]["properties"]:
            if p["name"] == prop:
                p["desired"] = {"value": value}
        return obj

    # as a client does (client-go's RetryOnConflict): the device's status is written by the
    # cloud as its twins report, so a read-modify-write can lose the race and is retried
    for attempt in range(10):
        try:
            await lab.store.update(DEVICES, change(await lab.store.get(DEVICES, "default", name)))
            return
        except Conflict:
            if attempt == 9:
                raise


async def test_mqtt_mapper_in_the_lab(plain_lab: RunningLab) -> None:
    await plain_lab.store.create(DEVICEMODELS, model("mqtt-thermo", "kubeedge-mqtt"))
    await plain_lab.store.create(DEVICES, device("mqtt-thermo-1", "mqtt-thermo", "kubeedge-mqtt", "20"))
    cred = plain_lab.lab.plan.node_identity(NODE).mapper("modbus")
    c = MqttClient(plain_lab.lab.plan.node_mqtt_port(NODE), auth=(cred.user, cred.password))
    try:
        c.sub(f"$hw/events/node/{NODE}/membership/get/result", "$hw/events/device/+/+/twin/update/delta")

        def member():
            c.pub(f"$hw/events/node/{NODE}/membership/get", {"event_id": "m", "timestamp": int(time.time() * 1000)})
            res = c.find(f"$hw/events/node/{NODE}/membership/get/result", lambda b: any(d["name"] == "mqtt-thermo-1" for d in b.get("devices", [])))
            return next(d for d in res["devices"] if d["name"] == "mqtt-thermo-1") if res else None

        entry = await eventually(member, timeout=30, interval=0.5, msg="membership lists the device")
        base = f"$hw/events/device/{entry['id']}"  # as mappers-go builds its topics
        c.pub(f"{base}/state/update", {"event_id": "s", "timestamp": int(time.time() * 1000), "state": "OK"})
        twin = {"temperature": {"actual": {"value": "18.5"}, "metadata": {"type": "float"}}, "setpoint": {"actual": {"value": "20"}, "metadata": {"type": "float"}}}
        c.pub(f"{base}/twin/update", {"event_id": "r", "timestamp": int(time.time() * 1000), "twin": twin})
        await eventually(lambda: _is(reported(plain_lab, "mqtt-thermo-1", "temperature"), "18.5"), timeout=30, msg="MQTT twin in the cloud")
        await set_desired(plain_lab, "mqtt-thermo-1", "setpoint", "23")
        delta = await eventually(lambda: c.find(f"{base}/twin/update/delta", lambda b: b.get("delta", {}).get("setpoint") == "23"), timeout=30, msg="delta at the mapper")
        assert delta["twin"]["setpoint"]["expected"]["value"] == "23"
        dev = await plain_lab.store.get(DEVICES, "default", "mqtt-thermo-1")
        assert dev["status"]["state"] == "ok"
    finally:
        c.close()


@pytest.mark.skipif(not stubs_available(), reason="DMI stubs not generated (./dev setup)")
async def test_dmi_mapper_in_the_lab(plain_lab: RunningLab, tmp_path) -> None:
    await plain_lab.store.create(DEVICEMODELS, model("vthermo-model", PROTOCOL))
    await plain_lab.store.create(DEVICES, device("dmi-thermo-1", "vthermo-model", PROTOCOL, "18"))
    mapper = RunningMapper(tmp_path, plain_lab.lab.plan.dmi_socket(NODE))
    try:
        await eventually(lambda: "default/dmi-thermo-1" in mapper.read().get("devices", {}), timeout=30, interval=0.3, msg="DMI mapper got its device")
        await eventually(lambda: _is(reported(plain_lab, "dmi-thermo-1", "setpoint"), "18"), timeout=30, msg="DMI twin in the cloud")
        await set_desired(plain_lab, "dmi-thermo-1", "setpoint", "26")
        await eventually(lambda: mapper.read()["devices"]["default/dmi-thermo-1"]["desired"]["setpoint"] == "26", timeout=30, interval=0.3, msg="desired value at the DMI mapper")
        await eventually(lambda: _is(reported(plain_lab, "dmi-thermo-1", "setpoint"), "26"), timeout=30, msg="written value back in the cloud")
    finally:
        mapper.stop()


async def _is(aw, want: str) -> bool:
    v = await aw
    return v is not None and float(v) == float(want)
