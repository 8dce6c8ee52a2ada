"""v1alpha2 <-> v1beta1 conversion and the DeviceStatus view (pure), on the manifests of the
compatibility suite."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from edgebus.objects import device_views as dv

DATA = Path(__file__).resolve().parents[1] / "data" / "kubeedge"


def docs(path: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all((DATA / path).read_text()) if d}


def unstashed(obj: dict) -> dict:
    o = copy.deepcopy(obj)
    o["metadata"].pop("annotations", None)
    return o


def test_v1alpha2_device_becomes_v1beta1() -> None:
    rtu = dv.device_to_storage(docs("v1alpha2/modbus.yaml")["pump-rtu"])
    spec = rtu["spec"]
    assert rtu["apiVersion"] == "devices.kubeedge.io/v1beta1"
    assert spec["nodeName"] == "edge-7" and spec["deviceModelRef"] == {"name": "pump-model"}
    assert spec["protocol"] == {
        "protocolName": "modbus",
        "configData": {"slaveID": 2, "serialPort": "/dev/ttyS4", "baudRate": 19200, "dataBits": 8, "parity": "odd", "stopBits": 2, "serialType": "RS485"},
    }
    flow, enable = spec["properties"]
    assert flow == {"name": "flow", "visitors": {"protocolName": "modbus", "configData": {"register": "HoldingRegister", "offset": 6, "limit": 1, "scale": 1, "isSwap": True, "isRegisterSwap": True}}}
    assert enable["desired"] == {"metadata": {"timestamp": "1650049403598", "type": "integer"}, "value": "1"}
    assert rtu["status"] == {"twins": [{"propertyName": "flow-enable", "reported": {"metadata": {"timestamp": "1650049403598", "type": "integer"}, "value": "1"}}]}


def test_v1alpha2_round_trip_without_the_stash() -> None:
    """Converted back from what is stored alone (as after a change through v1beta1)."""
    for name in ("pump-rtu", "pump-tcp"):
        original = docs("v1alpha2/modbus.yaml")[name]
        back = dv.device_from_storage(unstashed(dv.device_to_storage(original)))
        assert back["spec"] == original["spec"] and back["status"] == original["status"], name
    valve = docs("v1alpha2/opcua.yaml")["valve"]
    back = dv.device_from_storage(unstashed(dv.device_to_storage(valve)))
    assert back["spec"] == valve["spec"]
    assert {t["propertyName"] for t in back["status"]["twins"]} == {"open", "pressure"}
    model = docs("v1alpha2/modbus.yaml")["pump-model"]
    stored = dv.model_to_storage(model)
    assert stored["spec"]["properties"][0] == {"name": "flow", "description": "flow in litres per minute", "type": "INT", "accessMode": "ReadWrite", "maximum": "250", "unit": "l/min"}
    back = dv.model_from_storage(unstashed(stored))
    assert back["spec"]["properties"][0] == model["spec"]["properties"][0]
    assert "defaultValue" not in back["spec"]["properties"][1]["type"]["int"]  # only the stash keeps it


def test_v1beta1_device_seen_as_v1alpha2() -> None:
    boiler = docs("v1beta1/temperature-sensor.yaml")["boiler-01"]
    v = dv.device_from_storage(boiler)
    assert v["apiVersion"] == "devices.kubeedge.io/v1alpha2"
    assert v["spec"]["nodeSelector"]["nodeSelectorTerms"][0]["matchExpressions"][0] == {"key": "", "operator": "In", "values": ["edge-7"]}
    assert v["spec"]["protocol"] == {"modbus": {"slaveID": 3}, "common": {"tcp": {"ip": "127.0.0.1", "port": "5602"}, "customizedValues": {"communicateMode": "TCP"}}}
    temp = v["spec"]["propertyVisitors"][0]
    assert temp["modbus"] == {"register": "HoldingRegister", "offset": 4, "limit": 1, "scale": 0.1, "isSwap": False, "isRegisterSwap": False}
    assert temp["customizedValues"] == {"dataType": "float", "max": 95.0, "min": 0.5}
    assert v["status"]["twins"] == [{"propertyName": "burner-switch", "desired": {"value": "0"}}]
    # a v1alpha2 write keeps what only v1beta1 has
    again = dv.device_to_storage(v, boiler)
    assert again["spec"]["methods"] == boiler["spec"]["methods"]
    assert again["spec"]["properties"][0]["pushMethod"] == boiler["spec"]["properties"][0]["pushMethod"]


def test_devicestatus_view() -> None:
    dev = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "g", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
        "spec": {"deviceModelRef": {"name": "m"}},
        "status": {"state": "online", "stateReason": "", "stateTimestamp": "5", "lastOnlineTime": "2026-11-30T10:00:00Z", "twins": [{"propertyName": "level", "reported": {"value": "1"}}]},
    }
    st = dv.status_from_storage(dev)
    assert st["kind"] == "DeviceStatus" and st["metadata"]["ownerReferences"][0] == {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device", "name": "g", "uid": "u1", "controller": True}
    assert st["status"] == {"twins": [{"propertyName": "level", "reported": {"value": "1"}}], "state": "online", "lastOnlineTime": "2026-11-30T10:00:00Z", "extensions": {"stateTimestamp": "5"}}
    st["status"]["state"] = "offline"
    st["status"]["extensions"]["battery"] = "10"
    back = dv.status_to_storage(st, dev)
    assert back["status"]["state"] == "offline" and back["status"]["stateTimestamp"] == "5" and back["status"]["extensions"] == {"battery": "10"}
    assert back["spec"] == dev["spec"]
