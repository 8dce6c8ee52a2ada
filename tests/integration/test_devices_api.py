"""The device API over real HTTP: /apis/devices.kubeedge.io/v1beta1, discovery, status
subresource, and validation (types, access modes, min/max, the model reference)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator

import httpx
import pytest

from edgebus.natsd import free_port
from edgebus.runtime import NatsSettings
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from services.apiserver.config import ApiServerSettings, Settings
from services.apiserver.service import build

from .devicemesh import MODEL, modbus_device

G = "/apis/devices.kubeedge.io/v1beta1"
MODELS = f"{G}/namespaces/default/devicemodels"
DEVICES = f"{G}/namespaces/default/devices"


@pytest.fixture
async def api(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    svc = build(Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port)))
    await svc.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await eventually(lambda: _ok(client), timeout=10, msg="apiserver ready")
            yield client
    finally:
        await asyncio.wait_for(svc.stop(), 15)


async def _ok(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


def invalid(r: httpx.Response, *fragments: str) -> None:
    assert r.status_code == 422, r.text
    msg = r.json()["message"]
    for f in fragments:
        assert f in msg, msg


async def test_discovery(api: httpx.AsyncClient) -> None:
    groups = (await api.get("/apis")).json()
    assert groups["kind"] == "APIGroupList"
    g = next(x for x in groups["groups"] if x["name"] == "devices.kubeedge.io")
    assert g["preferredVersion"]["groupVersion"] == "devices.kubeedge.io/v1beta1"
    res = (await api.get(G)).json()
    assert res["groupVersion"] == "devices.kubeedge.io/v1beta1"
    names = {r["name"] for r in res["resources"]}
    assert {"devices", "devices/status", "devicemodels"} <= names
    core = {r["name"] for r in (await api.get("/api/v1")).json()["resources"]}
    assert "devices" not in core and "events" in core
    assert (await api.get("/apis/devices.kubeedge.io")).json()["kind"] == "APIGroup"
    assert (await api.get("/apis/nope.io/v1")).status_code == 404
    # a grouped resource is not served under /api/v1, nor a core one under a group
    assert (await api.get("/api/v1/namespaces/default/devices")).status_code == 404
    assert (await api.get(f"{G}/namespaces/default/pods")).status_code == 404


def warned(r: httpx.Response, *fragments: str) -> str:
    assert r.status_code in (200, 201), r.text
    text = " | ".join(r.headers.get_list("warning"))
    for f in fragments:
        assert f in text, text
    return text


async def test_devices_crud_status_and_validation(api: httpx.AsyncClient) -> None:
    dev = modbus_device("thermostat", 5020)
    # KubeEdge accepts a Device whose model does not exist (yet): so does edgebus, with a warning
    warned(await api.post(DEVICES, json=dev), "spec.deviceModelRef.name", "DeviceModel thermostat-model does not exist")
    assert (await api.delete(f"{DEVICES}/thermostat")).status_code == 200
    r = await api.post(MODELS, json=MODEL)
    assert r.status_code == 201 and not r.headers.get_list("warning")
    bad_model = copy.deepcopy(MODEL)
    bad_model["metadata"]["name"] = "bad"
    bad_model["spec"]["properties"][0]["type"] = "COLOR"
    bad_model["spec"]["properties"][1]["accessMode"] = "WriteOnly"
    bad_model["spec"]["properties"][2]["minimum"] = 5  # the CRD says string
    bad_model["spec"]["properties"].append(dict(bad_model["spec"]["properties"][3]))
    invalid(await api.post(MODELS, json=bad_model), 'Unsupported value: "COLOR"', "WriteOnly", 'minimum in body must be of type string: "integer"', "property names must be unique.")
    odd_model = copy.deepcopy(MODEL)
    odd_model["metadata"]["name"] = "odd"
    odd_model["spec"]["properties"][2]["minimum"] = "50"
    warned(await api.post(MODELS, json=odd_model), "spec.properties[2].minimum: 50 is greater than maximum 35")

    r = await api.post(DEVICES, json=dev)
    assert r.status_code == 201, r.text
    assert not r.headers.get_list("warning")
    created = r.json()
    assert created["apiVersion"] == "devices.kubeedge.io/v1beta1" and created["kind"] == "Device"
    created["metadata"].pop("resourceVersion")  # the writes below succeed (with warnings)

    def with_desired(prop: str, value) -> dict:
        d = copy.deepcopy(created)
        for p in d["spec"]["properties"]:
            if p["name"] == prop:
                p["desired"] = {"value": value}
        return d

    invalid(await api.put(f"{DEVICES}/thermostat", json=with_desired("setpoint", 22)), 'spec.properties[2].desired.value in body must be of type string: "integer"')
    warned(await api.put(f"{DEVICES}/thermostat", json=with_desired("setpoint", "99")), "above the maximum 35")
    warned(await api.put(f"{DEVICES}/thermostat", json=with_desired("setpoint", "warm")), "not a number")
    warned(await api.put(f"{DEVICES}/thermostat", json=with_desired("temperature", "20")), "ReadOnly")
    bad = copy.deepcopy(created)
    bad["spec"]["rules"] = [{"name": "r", "when": "temperature >> 3", "set": {"fan": "1"}}]
    invalid(await api.put(f"{DEVICES}/thermostat", json=bad), "when must read")
    bad["spec"]["rules"] = [{"name": "r", "when": "temperature > 3", "set": {"temperature": "1"}}]
    warned(await api.put(f"{DEVICES}/thermostat", json=bad), "property temperature is ReadOnly")
    bad = copy.deepcopy(created)
    bad["spec"]["properties"][2]["visitors"]["configData"]["register"] = "InputRegister"
    warned(await api.put(f"{DEVICES}/thermostat", json=bad), "cannot be written")
    bad["spec"]["properties"][2]["visitors"]["configData"].update(register="Register", dataType="int8", scale=0)
    warned(await api.put(f"{DEVICES}/thermostat", json=bad), "Register", "int8", "non-zero")
    bad["spec"]["properties"].append(copy.deepcopy(bad["spec"]["properties"][0]))
    invalid(await api.put(f"{DEVICES}/thermostat", json=bad), "property names must be unique.")
    r = await api.put(f"{DEVICES}/thermostat", json=with_desired("setpoint", "22"))
    assert r.status_code == 200 and not r.headers.get_list("warning"), r.headers
    created = r.json()

    # a merge patch of the desired value (what `edgebus device set` sends)
    r = await api.patch(f"{DEVICES}/thermostat", json={"spec": {"properties": with_desired("setpoint", "22.5")["spec"]["properties"]}}, headers={"content-type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    # status is a subresource: the main PUT keeps it, /status changes only it
    cur = r.json()
    cur["status"] = {"state": "online", "twins": [{"propertyName": "temperature", "reported": {"value": "21", "metadata": {"timestamp": "1"}}}]}
    r = await api.put(f"{DEVICES}/thermostat/status", json=cur)
    assert r.status_code == 200 and r.json()["status"]["state"] == "online"
    cur = r.json()
    cur["status"] = {"state": "offline"}
    cur["metadata"]["labels"] = {"room": "a"}
    r = await api.put(f"{DEVICES}/thermostat", json=cur)
    assert r.json()["status"]["state"] == "online" and r.json()["metadata"]["labels"] == {"room": "a"}
    table = (await api.get(DEVICES, headers={"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Node", "Model", "State", "Values"]
    assert table["rows"][0]["cells"][:5] == ["thermostat", "edge-1", "thermostat-model", "online", "temperature=21"]
    assert (await api.delete(f"{DEVICES}/thermostat")).status_code == 200
