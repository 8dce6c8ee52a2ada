"""The all-in-one edge process, in-process against a real hub and leaf: every service keeps
its own connection and credential (as the node's server sees them), a failing service is
started anew alone, and the optional services start and stop with what the node needs."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgebus.allinone.host import Host
from edgebus.allinone.settings import Settings, member_env
from edgebus.bus import Bus
from edgebus.identity.natsjwt import Key
from edgebus.natsd import free_port
from edgebus.objects import DEVICEMODELS, DEVICES, SERVICES
from edgebus.objectstore import ObjectStore
from edgebus.store import Store
from edgebus.testing.services import build_service
from edgebus.testing.servers import Cluster, Leaf, mapper_settings, register_node, start_leaf
from edgebus.testing.waiting import eventually

NODE = "edge-1"


def member_settings(leaf: Leaf, tmp: Path, metaserver_port: int) -> dict[str, dict[str, Any]]:
    def base(user: str) -> dict[str, Any]:
        return {"node": NODE, "nats": {**leaf.nats_settings(user), "ping_interval": 1}}

    return {
        "metamanager": {**base("metamanager"), "metamanager": {"data_dir": str(tmp / "mm"), "metaserver_port": metaserver_port}},
        "edgehub": {**base("edgehub"), "edgehub": {"heartbeat_interval": 0.5}},
        "devicetwin": {**base("devicetwin"), "devicetwin": {"data_dir": str(tmp / "twin"), "resync_interval": 2}},
        "edgemesh": {**base("edgemesh"), "edgemesh": {"dns_port": 0, "service_cidr": "127.43.0.0/24"}},
        "mappers.modbus": mapper_settings(leaf, "mappers.modbus"),
    }


@pytest.fixture
async def node(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, Any]]:
    """edgecontroller on the hub; edge-1's leaf; the all-in-one host's settings (not started)."""
    leaf = start_leaf(tmp_path, cluster.hub, NODE)
    cluster.leaves[NODE] = leaf
    ctl = build_service("edgecontroller", nats=cluster.hub.nats_settings("edgecontroller"))
    bus = cluster.hub.bus("test")
    await bus.connect(retry_for=5)
    store = ObjectStore(bus)
    await store.ensure()
    await store.ensure_system_namespaces()
    await register_node(store, NODE)
    await ctl.start()
    port = free_port()
    members = member_settings(leaf, tmp_path, port)
    for name, cfg in members.items():
        for k, v in member_env(name, cfg).items():
            monkeypatch.setenv(k, v)
    settings = Settings(
        node=NODE,
        nats={**leaf.nats_settings("allinone"), "ping_interval": 1},
        allinone={"services": ["metamanager", "edgehub", "devicetwin"], "on_demand": ["edgemesh", "mappers.modbus"], "linger": 0.5, "unhealthy_grace": 1.0, "restart_max": 1.0},
    )
    try:
        yield {"leaf": leaf, "store": store, "settings": settings, "tmp": tmp_path, "metaserver_port": port}
    finally:
        await ctl.stop()
        await bus.close()


async def connections(leaf: Leaf) -> dict[str, str]:
    """The node server's own view: connection name -> the nkey it authenticated with."""
    sys_bus = Bus(leaf.url, name="connz", auth=leaf.auth("system"))
    await sys_bus.connect(retry_for=5)
    try:
        m = await sys_bus.request("$SYS.REQ.SERVER.PING.CONNZ", json.dumps({"acc": "EDGE", "auth": True}).encode(), timeout=3)
    finally:
        await sys_bus.close()
    return {c.get("name") or "": c.get("authorized_user") or "" for c in json.loads(m.data)["data"]["connections"]}


def public_key(leaf: Leaf, user: str) -> str:
    return Key.from_seed(leaf.identity.local_nkey_file(user).read_text()).public


async def test_each_service_keeps_its_own_connection_and_credential(node: dict[str, Any]) -> None:
    leaf: Leaf = node["leaf"]
    host = Host(node["settings"])
    await host.start()
    try:
        await eventually(lambda: host.ready()["ok"], timeout=30, msg="every service ready")
        conns = await connections(leaf)
        for svc in ("metamanager", "edgehub", "devicetwin"):
            assert conns[f"{svc}@{NODE}"] == public_key(leaf, svc), f"{svc} connects with its own nkey"
        assert conns[f"allinone@{NODE}"] == public_key(leaf, "allinone")
        assert len(set(conns.values())) == len(conns), "no two connections share a credential"
        # the optional services are not running: nothing needs them yet
        assert not host.members["mappers.modbus"].wanted and host.members["mappers.modbus"].svc is None
        assert "mapper-modbus@edge-1" not in conns and "edgemesh@edge-1" not in conns
    finally:
        await host.stop()
    assert all(m.svc is None for m in host.members.values())


async def test_a_failing_service_is_started_anew_alone(node: dict[str, Any]) -> None:
    """devicetwin cannot open its store (another writer holds it): it is retried with back-off
    while the others run undisturbed; metamanager's metaserver port is taken: its task
    crash-loops, the service turns unhealthy and is started anew - alone."""
    leaf: Leaf = node["leaf"]
    holder = Store(node["tmp"] / "twin")  # the exclusive writer lock of devicetwin's environment
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", node["metaserver_port"]))
    squatter.listen()
    host = Host(node["settings"])
    await host.start()
    try:
        hub, mm, twin = (host.members[n] for n in ("edgehub", "metamanager", "devicetwin"))
        await eventually(lambda: hub.ready()["ok"], timeout=30, msg="edgehub ready")
        await eventually(lambda: twin.restarts >= 2, timeout=30, msg="devicetwin retried")
        assert "StoreLocked" in (twin.last_error or "") and twin.svc is None
        await eventually(lambda: mm.restarts >= 1, timeout=40, msg="metamanager started anew after crash-looping")
        assert "unhealthy" in (mm.last_error or "")
        first_hub = hub.svc
        squatter.close()
        holder.close()
        await eventually(lambda: host.ready()["ok"], timeout=40, msg="all ready once the causes are gone")
        assert hub.svc is first_hub and hub.restarts == 0, "edgehub was never restarted"
        assert f"edgehub@{NODE}" in await connections(leaf)
        health = host.health()
        assert health["ok"] and health["services"]["devicetwin"]["restarts"] >= 2
    finally:
        squatter.close()
        holder.close()
        await host.stop()


async def test_optional_services_follow_what_the_node_needs(node: dict[str, Any]) -> None:
    store: ObjectStore = node["store"]
    leaf: Leaf = node["leaf"]
    host = Host(node["settings"])
    await host.start()
    try:
        mapper, mesh = host.members["mappers.modbus"], host.members["edgemesh"]
        await eventually(lambda: host.ready()["ok"], timeout=30, msg="ready")
        assert not mapper.wanted and not mesh.wanted
        dev = {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "Device",
            "metadata": {"name": "meter", "namespace": "default"},
            "spec": {
                "deviceModelRef": {"name": "meter-model"},
                "nodeName": NODE,
                "protocol": {"protocolName": "modbus", "configData": {"ip": "127.0.0.1", "port": free_port(), "deviceID": 1}},
            },
        }
        model = {
            "apiVersion": "devices.kubeedge.io/v1beta1",
            "kind": "DeviceModel",
            "metadata": {"name": "meter-model", "namespace": "default"},
            "spec": {"protocol": "modbus", "properties": [{"name": "power", "type": "FLOAT", "accessMode": "ReadOnly"}]},
        }
        await store.create(DEVICEMODELS, model)
        other = {**dev, "metadata": {"name": "elsewhere", "namespace": "default"}, "spec": {**dev["spec"], "nodeName": "edge-2"}}
        await store.create(DEVICES, other)
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
        await store.create(SERVICES, svc)
        await eventually(lambda: mesh.state == "running", timeout=30, msg="edgemesh started for the Service")
        assert not mapper.wanted, "a Modbus device bound to another node needs no mapper here"
        await store.create(DEVICES, dev)
        await eventually(lambda: mapper.state == "running", timeout=30, msg="the Modbus mapper started for the device")
        conns = await connections(leaf)
        assert conns["mapper-modbus@edge-1"] == public_key(leaf, "mapper-modbus"), "the mapper keeps its own restricted credential"
        await eventually(lambda: host.ready()["ok"], timeout=30, msg="ready with the optional services")

        await store.delete(DEVICES, "default", "meter")
        await eventually(lambda: mapper.state == "stopped" and not mapper.wanted, timeout=30, msg="mapper stopped once no device needs it")
        assert mesh.state == "running"
        await store.delete(SERVICES, "default", "web")
        await eventually(lambda: mesh.state == "stopped", timeout=30, msg="edgemesh stopped once no Service is left")
        assert "mapper-modbus@edge-1" not in await connections(leaf)
    finally:
        await host.stop()
