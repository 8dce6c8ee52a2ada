"""``pushMethod`` of device properties, with real receivers: an HTTP server, an MQTT
subscriber (on the node's MQTT listener) and a redis-server; the payloads are the
mapper-framework's. A property with ``reportToCloud: false`` is pushed but not reported."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis

from edgebus.devices.simulators import ModbusThermostat
from edgebus.natsd import HubConfig, NatsServer, free_port
from edgebus.objects import DEVICES
from edgebus.testing.redisd import REDIS_SERVER, RedisServer
from edgebus.testing.waiting import eventually

from .devicemesh import apply_model, free_ports, modbus_device, start_mesh
from .kubeedge_clients import MqttClient

CLOCK = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


class Receiver(BaseHTTPRequestHandler):
    posts: list[tuple[str, str, str]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        Receiver.posts.append((self.path, self.headers.get("content-type", ""), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_receiver():
    Receiver.posts = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def redis_server(tmp_path: Path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (./dev setup installs it as root)")
    r = RedisServer(tmp_path / "redis")
    try:
        yield r
    finally:
        r.stop()


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
    s = ModbusThermostat(port=port, temperature=21.5, setpoint=20.0, humidity=40.0, drift=False)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
def outside_broker(tmp_path: Path):
    """An MQTT broker that is not the node's (where a pushMethod sends): a nats-server of its
    own with an MQTT listener and no authentication."""
    cfg = HubConfig(store_dir=str(tmp_path / "broker" / "js"), port=free_port(), leaf_port=free_port(), mqtt_port=free_port())
    srv = NatsServer(cfg, tmp_path / "broker")
    srv.start(die_with_parent=True)
    srv.wait_ready()
    try:
        yield cfg.mqtt_port
    finally:
        srv.stop()


def broker_address(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


async def test_push_http_mqtt_redis(mesh, sim, http_receiver, redis_server, outside_broker) -> None:
    dev = modbus_device("pusher", sim.port, rules=False)
    props = {p["name"]: p for p in dev["spec"]["properties"]}
    props["temperature"]["pushMethod"] = {"http": {"hostName": "http://127.0.0.1", "port": http_receiver, "requestPath": "/temps", "timeout": 2000}}
    props["humidity"]["pushMethod"] = {"mqtt": {"address": broker_address(outside_broker), "topic": "plant/humidity", "qos": 1, "retained": False}}
    props["humidity"]["reportToCloud"] = False
    props["setpoint"]["pushMethod"] = {"dbMethod": {"redis": {"redisClientConfig": {"addr": redis_server.addr, "db": 3, "poolsize": 5, "minIdleConns": 1}}}}
    props["fan"]["pushMethod"] = {"dbMethod": {"influxdb2": {"influxdb2ClientConfig": {"url": "http://127.0.0.1:1"}}}}  # not supported: skipped
    sub = MqttClient(outside_broker, name="push-receiver", auth=None)
    try:
        sub.sub("plant/humidity")
        await eventually(mesh.node_ready, timeout=15, msg="edge-1 Ready")
        await apply_model(mesh.store)
        await mesh.store.create(DEVICES, dev)

        post = await eventually(lambda: next(iter(Receiver.posts), None), timeout=20, msg="HTTP push")
        path, ctype, body = post
        assert path == "/temps" and ctype == "application/x-www-form-urlencoded"
        assert re.fullmatch(rf"temperature=21\.5&time={CLOCK}", body), body

        msg = await eventually(lambda: sub.find("plant/humidity"), timeout=20, msg="MQTT push")
        assert re.fullmatch(rf"time is {CLOCK}  plant/humidity: 40", msg.decode() if isinstance(msg, bytes) else str(msg)), msg

        r = redis.Redis(host="127.0.0.1", port=redis_server.port, db=3)
        members = await eventually(lambda: r.zrange("pusher", 0, -1, withscores=True) or None, timeout=20, msg="redis push")
        member, score = members[0]
        assert re.fullmatch(rf"TimeStamp: {int(score)} PropertyName: setpoint data: 20", member.decode()), member

        # the twins still reach the cloud, except the one with reportToCloud: false
        await eventually(lambda: _eq(mesh.reported("pusher", "temperature"), "21.5"), timeout=15, msg="twin in the cloud")
        await eventually(lambda: _eq(mesh.reported("pusher", "fan"), "false"), timeout=15, msg="fan twin despite the unsupported sink")
        assert await mesh.reported("pusher", "humidity") is None

        # a receiver that goes away does not stop the device
        redis_server.stop()
        sim.temperature = 25.0
        await eventually(lambda: _eq(mesh.reported("pusher", "temperature"), "25"), timeout=15, msg="device still driven with its sink down")
        assert mesh.services["mappers.modbus"].health()["ok"]
    finally:
        sub.close()


async def _eq(aw, want):
    return (await aw) == want
