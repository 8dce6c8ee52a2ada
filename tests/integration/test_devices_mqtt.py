"""KubeEdge MQTT compatibility: a real paho-mqtt client plays a KubeEdge mapper against the
edge leaf's MQTT listener (nats-server maps the $hw topics onto the NATS subjects devicetwin
serves). Also: bad MQTT input gets an error on the result topic and loses no good value."""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.testing.waiting import eventually

from .devicemesh import NODE, start_mesh

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


class Client:
    """A paho-mqtt client whose received messages are queued for the (async) test."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.q: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"kubeedge-mapper-{time.time_ns()}")
        self.c.username_pw_set(user, password)
        self.c.on_message = lambda _c, _u, msg: self.q.put((msg.topic, msg.payload))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.seen: list[tuple[str, Any]] = []

    def sub(self, *topics: str) -> None:
        for t in topics:
            r, _ = self.c.subscribe(t, qos=1)
            assert r == mqtt.MQTT_ERR_SUCCESS

    def pub(self, topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.c.publish(topic, data, qos=1).wait_for_publish(5)

    def drain(self) -> list[tuple[str, Any]]:
        while True:
            try:
                topic, data = self.q.get_nowait()
            except queue.Empty:
                return self.seen
            try:
                body = json.loads(data)
            except ValueError:
                body = data
            self.seen.append((topic, body))

    def find(self, topic: str, pred: Any = lambda b: True) -> Any:
        for t, b in self.drain():
            if t == topic and pred(b):
                return b
        return None

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


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
    c = Client(mesh.leaf.mqtt_port, cred.user, cred.password)
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
        assert entry["namespace"] == "default"
        assert entry["twin"]["led"]["expected"]["value"] == "10"
        assert entry["twin"]["led"]["metadata"]["type"] == "int"

        # the mapper reports: values reach the cloud
        c.pub(f"{BASE}/twin/update", {"event_id": "r1", "timestamp": int(time.time() * 1000), "twin": {"temperature": {"actual": {"value": "19.5"}}, "led": {"actual": {"value": "10"}}}})
        ok = await eventually(lambda: c.find(f"{BASE}/twin/update/result", lambda b: b.get("event_id") == "r1"), msg="update result")
        assert "code" not in ok and ok["twin"]["temperature"]["actual"]["value"] == "19.5"
        await eventually(lambda: _eq(mesh.reported(DEV, "temperature"), "19.5"), timeout=10, msg="report in cloud status")

        # a desired value set in the cloud arrives as a delta
        await mesh.set_desired(DEV, "led", "200")
        delta = await eventually(lambda: c.find(f"{BASE}/twin/update/delta", lambda b: b.get("delta", {}).get("led") == "200"), timeout=10, msg="delta for led")
        assert delta["twin"]["led"]["expected"]["value"] == "200"

        # state and twin/get
        c.pub(f"{BASE}/state/update", {"event_id": "s1", "state": "online"})
        assert (await eventually(lambda: c.find(f"{BASE}/state/update/result", lambda b: b.get("event_id") == "s1"), msg="state result"))["state"] == "online"
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
        c.pub("$hw/events/device/default/ghost/twin/update", {"event_id": "ghost", "twin": {"x": {"actual": {"value": "1"}}}})
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
