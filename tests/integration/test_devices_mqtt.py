"""KubeEdge MQTT compatibility: a real paho-mqtt client plays a KubeEdge mapper against the
edge leaf's MQTT listener (nats-server maps the $hw topics onto the NATS subjects devicetwin
serves), written from KubeEdge's topic table and message types: it builds its topics from
the membership ``id`` as mappers-go does, reports state ``OK`` as mappers-go does, and reads
results, documents and deltas in KubeEdge's shapes. Also: bad MQTT input gets an error on
the result topic and loses no good value."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.testing.waiting import eventually

from .devicemesh import NODE, start_mesh
from .kubeedge_clients import MqttClient as Client

DEV = "sensor.a1"  # a dot in a topic level: nats-server maps it to '//' in the subject
BASE = f"$hw/events/device/default/{DEV}"

MODEL = {
    "metadata": {"name": "sensor-model", "namespace": "default"},
    "spec": {
        "properties": [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
            {"name": "led", "type": "INT", "accessMode": "ReadWrite", "minimum": "0", "maximum": "255"},
        ]
    },
}
DEVICE = {
    "metadata": {"name": DEV, "namespace": "default"},
    "spec": {
        "deviceModelRef": {"name": "sensor-model"},
        "nodeName": NODE,
        "protocol": {"protocolName": "kubeedge-mqtt-mapper"},
        "properties": [{"name": "temperature"}, {"name": "led", "desired": {"value": "10"}}],
    },
}


@pytest.fixture
async def mesh(cluster, tmp_path: Path):
    m = await start_mesh(cluster, tmp_path, mappers=())
    try:
        yield m
    finally:
        await m.stop()


async def test_kubeedge_mapper_over_mqtt(mesh) -> None:
    await eventually(mesh.node_ready, timeout=15, msg="edge-1 Ready")
    await mesh.store.create(DEVICEMODELS, MODEL)
    await mesh.store.create(DEVICES, DEVICE)
    cred = mesh.leaf.mapper("modbus")  # a mapper's MQTT login on the node's server
    c = Client(mesh.leaf.mqtt_port, auth=(cred.user, cred.password))
    try:
        c.sub(
            f"$hw/events/node/{NODE}/membership/get/result",
            "$hw/events/device/+/+/twin/update/delta",
            f"{BASE}/twin/update/result",
            f"{BASE}/twin/get/result",
            f"{BASE}/state/update/result",
        )

        # membership: ask until devicetwin has the device (it arrives through metamanager)
        def member():
            c.pub(f"$hw/events/node/{NODE}/membership/get", {"event_id": "m1"})
            return c.find(f"$hw/events/node/{NODE}/membership/get/result", lambda b: any(d["name"] == DEV for d in b.get("devices", [])))

        res = await eventually(lambda: member(), timeout=15, interval=0.3, msg="membership lists the device")
        entry = next(d for d in res["devices"] if d["name"] == DEV)
        assert entry["id"] == f"default/{DEV}" and entry["namespace"] == "default"
        assert entry["twin"]["led"]["expected"]["value"] == "10"
        assert entry["twin"]["led"]["metadata"]["type"] == "int"
        assert set(entry["twin"]["led"]["expected"]["metadata"]) == {"timestamp"}  # no extra value metadata
        # a mappers-go mapper builds its topics from the id: they are the namespaced topics
        assert f"$hw/events/device/{entry['id']}" == BASE
        c.sub(f"{BASE}/twin/update/document")

        # the mapper reports: values reach the cloud
        # (as mappers-go and the mapper-framework do: metadata.type, the expected value sent along, empty)
        twin = {"temperature": {"actual": {"value": "19.5"}, "expected": {"value": ""}, "metadata": {"type": "float"}}, "led": {"actual": {"value": "10"}, "metadata": {"type": "integer"}}}
        c.pub(f"{BASE}/twin/update", {"event_id": "r1", "timestamp": int(time.time() * 1000), "twin": twin})
        ok = await eventually(lambda: c.find(f"{BASE}/twin/update/result", lambda b: b.get("event_id") == "r1"), msg="update result")
        assert "code" not in ok and ok["twin"]["temperature"]["actual"]["value"] == "19.5"
        assert ok["twin"]["led"]["metadata"] == {"type": "integer"}
        doc = await eventually(lambda: c.find(f"{BASE}/twin/update/document", lambda b: b.get("event_id") == "r1"), msg="twin document")
        assert doc["twin"]["temperature"]["last"] is None and doc["twin"]["temperature"]["current"]["actual"]["value"] == "19.5"
        await eventually(lambda: _eq(mesh.reported(DEV, "temperature"), "19.5"), timeout=10, msg="report in cloud status")
        dev = await mesh.store.get(DEVICES, "default", DEV)
        assert {t["propertyName"]: t["reported"]["metadata"]["type"] for t in dev["status"]["twins"] if "reported" in t} == {"temperature": "float", "led": "integer"}

        # a desired value set in the cloud arrives as a delta
        await mesh.set_desired(DEV, "led", "200")
        delta = await eventually(lambda: c.find(f"{BASE}/twin/update/delta", lambda b: b.get("delta", {}).get("led") == "200"), timeout=10, msg="delta for led")
        assert delta["twin"]["led"]["expected"]["value"] == "200"
        assert set(delta["twin"]) == {"led"}  # only twins with an expected value, as KubeEdge's delta

        # state: mappers-go publishes "OK"; the result is KubeEdge's {device: {name, state, lastOnlineTime}}
        c.pub(f"{BASE}/state/update", {"event_id": "s1", "state": "OK"})
        sr = await eventually(lambda: c.find(f"{BASE}/state/update/result", lambda b: b.get("event_id") == "s1"), msg="state result")
        assert sr["device"]["name"] == DEV and sr["device"]["state"] == "ok" and sr["device"]["lastOnlineTime"].endswith("Z")
        c.pub(f"{BASE}/state/update", {"event_id": "s1b", "state": "online"})
        assert (await eventually(lambda: c.find(f"{BASE}/state/update/result", lambda b: b.get("event_id") == "s1b"), msg="state result"))["device"]["state"] == "online"
        c.pub(f"{BASE}/twin/get", {"event_id": "g1"})
        got = await eventually(lambda: c.find(f"{BASE}/twin/get/result", lambda b: b.get("event_id") == "g1"), msg="twin/get result")
        assert got["twin"]["temperature"]["actual"]["value"] == "19.5"

        # bad input: an error on the result topic, never a crash, never a lost good value
        c.pub(f"{BASE}/twin/update", b"\x00not json")
        assert "not JSON" in (await eventually(lambda: c.find(f"{BASE}/twin/update/result", lambda b: "JSON" in b.get("reason", "")), msg="garbage rejected"))["reason"]
        c.pub(f"{BASE}/twin/update", {"event_id": "bad-type", "twin": {"temperature": {"actual": {"value": "warm"}}}})
        r = await eventually(lambda: c.find(f"{BASE}/twin/update/result", lambda b: b.get("event_id") == "bad-type"), msg="wrong type rejected")
        assert r["code"] == 400 and "not a number" in r["errors"]["temperature"]
        c.pub(f"{BASE}/twin/update", {"event_id": "ro", "twin": {"temperature": {"expected": {"value": "20"}}}})
        r = await eventually(lambda: c.find(f"{BASE}/twin/update/result", lambda b: b.get("event_id") == "ro"), msg="read-only desired rejected")
        assert "ReadOnly" in r["errors"]["temperature"]
        c.pub(f"{BASE}/twin/update", {"event_id": "range", "twin": {"led": {"expected": {"value": "999"}}, "temperature": {"actual": {"value": "20.5"}}}})
        r = await eventually(lambda: c.find(f"{BASE}/twin/update/result", lambda b: b.get("event_id") == "range"), msg="out-of-range desired rejected")
        assert "above the maximum" in r["errors"]["led"] and r["twin"]["temperature"]["actual"]["value"] == "20.5"
        c.pub(f"{BASE}/twin/update", {"event_id": "nope", "twin": {"pressure": {"actual": {"value": "1"}}}})
        r = await eventually(lambda: c.find(f"{BASE}/twin/update/result", lambda b: b.get("event_id") == "nope"), msg="unknown property rejected")
        assert "no property pressure" in r["errors"]["pressure"]
        c.sub("$hw/events/device/default/ghost/twin/update/result")
        c.pub("$hw/events/device/default/ghost/twin/update", {"event_id": "ghost", "twin": {"x": {"actual": {"value": "1"}}}})
        r = await eventually(lambda: c.find("$hw/events/device/default/ghost/twin/update/result", lambda b: b.get("event_id") == "ghost"), msg="unknown device")
        assert r["code"] == 404
        c.pub(f"{BASE}/state/update", {"event_id": "s2", "state": "exploded"})
        r = await eventually(lambda: c.find(f"{BASE}/state/update/result", lambda b: b.get("event_id") == "s2"), msg="bad state rejected")
        assert "state must be one of" in r["reason"]
        # the good values survived, and the latest good one reached the cloud
        await eventually(lambda: _eq(mesh.reported(DEV, "temperature"), "20.5"), timeout=10, msg="good value after bad ones")
        assert await mesh.edge_value(DEV, "temperature") == "20.5"
        assert mesh.services["devicetwin"].health()["ok"]
    finally:
        c.close()


async def _eq(aw, want):
    return (await aw) == want
