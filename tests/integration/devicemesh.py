"""A whole device pipeline in-process against a real hub and leaf (with its MQTT listener):
cloudhub, edgecontroller, devicecontroller in the cloud; metamanager, edgehub, devicetwin and
mappers on edge-1; real simulated devices. Used by the device integration tests."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebus.bus import Bus
from edgebus.envelope import Envelope
from edgebus.errors import NotFound
from edgebus.natsd import free_port
from edgebus.objects import DEVICEMODELS, DEVICES, NODES
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service
from edgebus.testing.services import build_service
from edgebus.testing.servers import Cluster, Leaf, cloudhub_identity, mapper_settings, register_node, start_leaf
from edgebus import names

NODE = "edge-1"

MODEL = {
    "apiVersion": "devices.kubeedge.io/v1beta1",
    "kind": "DeviceModel",
    "metadata": {"name": "thermostat-model", "namespace": "default"},
    "spec": {
        "protocol": "modbus",
        "properties": [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly", "minimum": "-40", "maximum": "120", "unit": "Celsius"},
            {"name": "humidity", "type": "FLOAT", "accessMode": "ReadOnly"},
            {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "5", "maximum": "35"},
            {"name": "fan", "type": "BOOLEAN", "accessMode": "ReadWrite"},
        ],
    },
}


def modbus_device(name: str, port: int, *, collect: int = 50, rules: bool = True, node: str = NODE) -> dict[str, Any]:
    def prop(pname: str, cfg: dict[str, Any], desired: str | None = None) -> dict[str, Any]:
        p: dict[str, Any] = {"name": pname, "collectCycle": collect, "reportCycle": 1000, "visitors": {"protocolName": "modbus", "configData": cfg}}
        if desired is not None:
            p["desired"] = {"value": desired}
        return p

    dev: dict[str, Any] = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "thermostat-model"},
            "nodeName": node,
            "protocol": {"protocolName": "modbus", "configData": {"ip": "127.0.0.1", "port": port, "deviceID": 1, "timeout": 0.5}},
            "properties": [
                prop("temperature", {"register": "InputRegister", "offset": 0, "limit": 1, "dataType": "int16", "scale": 0.1}),
                prop("humidity", {"register": "InputRegister", "offset": 1, "limit": 2, "dataType": "float32"}),
                prop("setpoint", {"register": "HoldingRegister", "offset": 0, "limit": 1, "dataType": "int16", "scale": 0.1}),
                prop("fan", {"register": "CoilRegister", "offset": 0, "limit": 1}),
            ],
        },
    }
    if rules:
        dev["spec"]["rules"] = [
            {"name": "fan-on", "when": "temperature > 30", "set": {"fan": "true"}},
            {"name": "fan-off", "when": "temperature < 28", "set": {"fan": "false"}},
        ]
    return dev


@dataclass
class DeviceMesh:
    cluster: Cluster
    leaf: Leaf
    store: ObjectStore
    cloud: Bus
    edge: Bus
    services: dict[str, Service[Any]]
    tmp: Path

    async def twins(self, node: str = NODE) -> dict[str, Any]:
        env = Envelope.new(source="test", operation="query", content={})
        return dict((await self.edge.call(names.devicetwin_subject(node, "twins"), env, timeout=5)).content)

    async def edge_events(self, node: str = NODE) -> list[dict[str, Any]]:
        env = Envelope.new(source="test", operation="query", content={"limit": 10_000})
        return list((await self.edge.call(names.devicetwin_subject(node, "events"), env, timeout=5)).content["events"])

    async def edge_value(self, device: str, prop: str, ns: str = "default") -> str | None:
        t = (await self.twins())["devices"].get(f"{ns}/{device}", {}).get("twin", {}).get(prop, {})
        return (t.get("actual") or {}).get("value")

    async def reported(self, device: str, prop: str) -> str | None:
        try:
            dev = await self.store.get(DEVICES, "default", device)
        except NotFound:
            return None
        for t in (dev.get("status") or {}).get("twins") or []:
            if t.get("propertyName") == prop:
                return (t.get("reported") or {}).get("value")
        return None

    async def set_desired(self, device: str, prop: str, value: str) -> dict[str, Any]:
        def change(obj: dict[str, Any]) -> dict[str, Any]:
            for p in obj["spec"]["properties"]:
                if p["name"] == prop:
                    p["desired"] = {"value": value}
            return obj

        cur = await self.store.get(DEVICES, "default", device)
        return await self.store.update(DEVICES, change(copy.deepcopy(cur)))

    async def node_ready(self) -> bool:
        try:
            n = await self.store.get(NODES, None, NODE)
        except NotFound:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))

    async def stop(self) -> None:
        for b in (self.cloud, self.edge):
            await b.close()
        for s in reversed(list(self.services.values())):
            await s.stop()


async def start_mesh(
    cluster: Cluster, tmp: Path, *, via_proxy: bool = False, mappers: tuple[str, ...] = ("mappers.modbus",), devicetwin: dict[str, Any] | None = None
) -> DeviceMesh:
    leaf = start_leaf(tmp, cluster.hub, NODE, via_proxy=via_proxy, mqtt=True)
    cluster.leaves[NODE] = leaf
    hub = cluster.hub

    def edge_settings(user: str) -> dict[str, Any]:
        return {"node": NODE, "nats": {**leaf.nats_settings(user), "ping_interval": 1}}

    svcs: dict[str, Service[Any]] = {
        "cloudhub": build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub=cloudhub_identity(hub, node_grace_period=5)),
        "edgecontroller": build_service("edgecontroller", nats=hub.nats_settings("edgecontroller")),
        "devicecontroller": build_service("devicecontroller", nats=hub.nats_settings("devicecontroller"), devicecontroller={"ack_wait": 3.0}),
        "metamanager": build_service("metamanager", **edge_settings("metamanager"), metamanager={"data_dir": str(tmp / "mm"), "metaserver_port": free_port()}),
        "edgehub": build_service("edgehub", **edge_settings("edgehub"), edgehub={"heartbeat_interval": 0.5, "link_check_interval": 0.2}),
        "devicetwin": build_service("devicetwin", **edge_settings("devicetwin"), devicetwin={"data_dir": str(tmp / "dt"), "resync_interval": 2.0, **(devicetwin or {})}),
    }
    for m in mappers:
        svcs[m] = build_service(m, **mapper_settings(leaf, m), mapper={"membership_interval": 2.0, "reconnect_max": 0.5})
    cloud = hub.bus("test-cloud")
    await cloud.connect(retry_for=5)
    edge = leaf.bus("test-edge")
    await edge.connect(retry_for=5)
    store = ObjectStore(cloud)
    await store.ensure()
    await store.ensure_system_namespaces()
    await register_node(store, NODE)
    for s in svcs.values():
        await s.start()
    return DeviceMesh(cluster, leaf, store, cloud, edge, svcs, tmp)


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


async def apply_model(store: ObjectStore, model: dict[str, Any] = MODEL) -> None:
    await store.create(DEVICEMODELS, copy.deepcopy(model))
