"""Pure device logic: typed values, rules, twins and conflicts (devicetwin), status merging
(devicecontroller), routing (edgecontroller), and the $hw subject mapping."""

from __future__ import annotations

import copy

import pytest

from edgebus import names
from edgebus.devices import hw
from edgebus.errors import InvalidMessage
from edgebus.names import ObjectRef
from edgebus.objects import DEVICEMODELS, DEVICES
from edgebus.objects import devices as d
from services.devicecontroller import logic as dc
from services.devicetwin import logic as dt
from services.edgecontroller.logic import Index, diff

MODEL = {
    "metadata": {"name": "m", "namespace": "default"},
    "spec": {
        "properties": [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
            {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "5", "maximum": "35"},
            {"name": "fan", "type": "BOOLEAN", "accessMode": "ReadWrite"},
            {"name": "mode", "type": "STRING"},
            {"name": "count", "type": "int", "maximum": "10"},
        ]
    },
}


def device(**spec) -> dict:
    base = {
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "m"},
            "nodeName": "edge-1",
            "properties": [{"name": "setpoint", "desired": {"value": "22"}}],
            "rules": [
                {"name": "on", "when": "temperature > 30", "set": {"fan": "true"}},
                {"name": "off", "when": "temperature < 28", "set": {"fan": False}},
            ],
        },
    }
    base["spec"].update(spec)
    return base


# -- values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t,raw,want",
    [("INT", "42", 42), ("int", 7.0, 7), ("INT", "1e2", 100), ("FLOAT", "21.5", 21.5), ("DOUBLE", 3, 3.0), ("BOOLEAN", "TRUE", True), ("BOOLEAN", 0, False), ("BOOLEAN", "off", False), ("STRING", 5, "5")],
)
def test_parse_value(t, raw, want) -> None:
    assert d.parse_value(t, raw) == want


@pytest.mark.parametrize("t,raw", [("INT", "4.5"), ("INT", True), ("FLOAT", "warm"), ("FLOAT", "nan"), ("BOOLEAN", "maybe"), ("FLOAT", None), ("INT", [1]), ("STRING", {"a": 1})])
def test_parse_value_rejects(t, raw) -> None:
    with pytest.raises(ValueError):
        d.parse_value(t, raw)


def test_format_is_canonical() -> None:
    assert d.canonical("FLOAT", "22.0") == d.canonical("FLOAT", 22) == "22"
    assert d.canonical("FLOAT", "0.1") == "0.1"
    assert d.canonical("BOOLEAN", "1") == "true"
    prop = d.model_props(MODEL)["setpoint"]
    with pytest.raises(ValueError, match="above the maximum 35"):
        prop.check("36")
    with pytest.raises(ValueError, match="below the minimum 5"):
        prop.check(4)


def test_rules_parse_and_hold() -> None:
    r = d.parse_rule({"name": "x", "when": " temperature>=30.5 ", "set": {"fan": 1}})
    assert (r.prop, r.op, r.literal, r.set) == ("temperature", ">=", "30.5", (("fan", "1"),))
    assert r.holds("FLOAT", 30.5) and not r.holds("FLOAT", 30.4)
    assert d.parse_rule({"name": "s", "when": "mode == 'eco'", "set": {"fan": "0"}}).holds("STRING", "eco")
    for bad in ({"name": "x", "when": "temperature >> 3", "set": {"a": "1"}}, {"name": "x", "when": "t > 3"}, {"when": "t > 3", "set": {"a": 1}}, "rule"):
        with pytest.raises(ValueError):
            d.parse_rule(bad)


def test_device_against_model() -> None:
    assert not d.check_against_model(device(), MODEL).items
    bad = device(properties=[{"name": "temperature", "desired": {"value": "1"}}, {"name": "ghost"}, {"name": "setpoint", "desired": {"value": "99"}}],
                 rules=[{"name": "r", "when": "mode > 3", "set": {"temperature": "1", "nope": "1"}}])
    msgs = " | ".join(c["message"] for c in d.check_against_model(bad, MODEL).items)
    for frag in ("ReadOnly", "has no such property", "above the maximum", "only compare with == and !=", "no such property in the model"):
        assert frag in msgs


# -- devicetwin -----------------------------------------------------------------------


def twin_setup():
    info = dt.DeviceInfo.build(device(), MODEL)
    twin = dt.new_twin()
    changed, problems = dt.apply_cloud_desired(twin, info, now=1000)
    assert changed == ["setpoint"] and not problems
    return info, twin


def report(twin, info, ts, **values):
    out = dt.Applied()
    dt.apply_reported(twin, info, {k: (v, ts) for k, v in values.items()}, out)
    return out


def test_reports_stale_and_bad_values() -> None:
    info, twin = twin_setup()
    out = report(twin, info, 10, temperature="21.5", setpoint="20")
    assert out.reported == ["temperature", "setpoint"] and not out.errors
    assert dt.deltas(twin, info) == {"setpoint": "22"}
    out = report(twin, info, 5, temperature="99")  # older than what the twin has
    assert out.stale == 1 and dt.reported_value(twin, "temperature") == "21.5"
    out = report(twin, info, 11, temperature="hot", ghost="1", setpoint="22.0")
    assert set(out.errors) == {"temperature", "ghost"} and out.reported == ["setpoint"]
    assert dt.reported_value(twin, "temperature") == "21.5"  # the good value is kept
    assert dt.deltas(twin, info) == {}


def test_rules_fire_on_the_edge_once_per_crossing() -> None:
    info, twin = twin_setup()
    fired = []
    for ts, temp in enumerate([25, 31, 32, 29, 27, 26, 33], start=1):
        out = report(twin, info, ts, temperature=str(temp))
        f, desired = dt.evaluate_rules(twin, info, out.reported, now=ts, trigger=f"e{ts}")
        fired += [(x.rule, temp, x.set, x.trigger) for x in f]
    assert fired == [
        ("off", 25, {"fan": "false"}, "e1"),
        ("on", 31, {"fan": "true"}, "e2"),
        ("off", 27, {"fan": "false"}, "e5"),
        ("on", 33, {"fan": "true"}, "e7"),
    ]
    assert twin["props"]["fan"]["desired"] == {"value": "true", "ts": 7, "source": "rule:on"}


def test_conflicts_between_cloud_rules_and_edge_apps() -> None:
    info, twin = twin_setup()
    # a rule overrides the cloud's desired fan value ...
    cloud = dt.DeviceInfo.build(device(properties=[{"name": "fan", "desired": {"value": "false"}}]), MODEL)
    assert dt.apply_cloud_desired(twin, cloud, now=2)[0] == ["fan"]
    out = report(twin, cloud, 3, temperature="31")
    dt.evaluate_rules(twin, cloud, out.reported, now=3)
    assert dt.desired_value(twin, "fan") == "true"
    # ... and the same cloud value sent again (e.g. after a reconnect) does not undo it
    assert dt.apply_cloud_desired(twin, cloud, now=4)[0] == []
    assert dt.desired_value(twin, "fan") == "true"
    # a new cloud value wins again
    cloud2 = dt.DeviceInfo.build(device(properties=[{"name": "fan", "desired": {"value": "true"}}]), MODEL)
    dt.apply_cloud_desired(twin, cloud2, now=5)
    assert twin["props"]["fan"]["desired"]["source"] == "cloud"
    # an edge application (expected in twin/update) is checked like the cloud's values
    out = dt.Applied()
    dt.apply_expected(twin, cloud2, {"fan": ("false", 6), "temperature": ("1", 6), "setpoint": ("99", 6)}, now=6, out=out)
    assert out.desired == ["fan"] and twin["props"]["fan"]["desired"]["source"] == "edge"
    assert "ReadOnly" in out.errors["temperature"] and "maximum" in out.errors["setpoint"]
    # the cloud drops its desired value: a cloud-sourced desired value goes with it
    dt.apply_cloud_desired(twin, dt.DeviceInfo.build(device(properties=[]), MODEL), now=7)
    assert dt.desired_value(twin, "setpoint") is None and dt.desired_value(twin, "fan") == "false"


def test_state_is_latest_wins() -> None:
    twin = dt.new_twin()
    assert dt.set_state(twin, "online", "", 10) and twin["lastOnline"] == 10
    assert not dt.set_state(twin, "offline", "gone", 5)
    assert dt.set_state(twin, "unhealthy", "Modbus exception 4", 11) and twin["state"] == "unhealthy"


# -- devicecontroller ----------------------------------------------------------------


def test_status_merge_never_stale_over_new() -> None:
    dev = device()
    r1 = {"twins": {"temperature": {"reported": {"value": "21", "ts": 100}}, "fan": {"desired": {"value": "true", "ts": 100, "source": "rule:on"}}}, "state": {"value": "online", "reason": "", "ts": 100}, "lastOnline": 100}
    r0 = {"twins": {"temperature": {"reported": {"value": "19", "ts": 50}}, "setpoint": {"reported": {"value": "22", "ts": 50}}}, "state": {"value": "offline", "reason": "x", "ts": 50}}
    assert dc.merge_report(dev, dc.check_report(r1), MODEL)
    assert dc.merge_report(dev, dc.check_report(r0), MODEL)  # only setpoint is new
    tw = {t["propertyName"]: t for t in dev["status"]["twins"]}
    assert tw["temperature"]["reported"] == {"value": "21", "metadata": {"timestamp": "100", "type": "FLOAT"}}
    assert tw["setpoint"]["reported"]["value"] == "22"
    assert tw["fan"]["observedDesired"]["metadata"]["source"] == "rule:on"
    assert dev["status"]["state"] == "online" and dev["status"]["lastOnlineTime"].startswith("1970-01-01T00:00:00")
    assert not dc.merge_report(dev, dc.check_report(r0), MODEL)
    for bad in ("x", {"twins": []}, {"twins": {"a": {"reported": {"value": 1, "ts": 1}}}}, {"twins": {}, "state": {"value": "weird", "ts": 1}}):
        with pytest.raises(InvalidMessage):
            dc.check_report(bad)


def test_rule_event_object() -> None:
    ev = {"id": "ab12", "rule": "on", "namespace": "default", "device": "t", "time": 1_700_000_000_000, "message": "rule on: temperature is 31: set fan = true"}
    e = dc.rule_event(dc.check_event({"event": ev}), "edge-1", "uid-1")
    assert e["metadata"]["name"] == "t.ab12" and e["involvedObject"]["uid"] == "uid-1"
    assert e["firstTimestamp"] == "2023-11-14T22:13:20Z" and e["reason"] == "RuleFired"
    with pytest.raises(InvalidMessage):
        dc.check_event({"event": {**ev, "id": "../x"}})


# -- edgecontroller routing ----------------------------------------------------------


def test_devices_and_their_models_go_to_their_node() -> None:
    idx = Index()
    model = copy.deepcopy(MODEL)
    other_model = {"metadata": {"name": "unused", "namespace": "default"}, "spec": {}}
    idx.apply(DEVICEMODELS, model, deleted=False)
    idx.apply(DEVICEMODELS, other_model, deleted=False)
    dev = device()
    dev["status"] = {"state": "online"}
    affected = idx.apply(DEVICES, dev, deleted=False)
    assert set(affected) == {"edge-1"}
    acts = diff(idx, "edge-1", {}, None)
    assert {a.ref for a in acts} == {ObjectRef("devices", "default", "t"), ObjectRef("devicemodels", "default", "m")}
    sent_dev = next(a for a in acts if a.ref.resource == "devices")
    assert "status" not in sent_dev.content  # the edge owns device status
    sent = {a.ref: type("S", (), {"hash": a.hash, "deleted": False})() for a in acts}
    # a status-only change sends nothing
    dev2 = copy.deepcopy(dev)
    dev2["status"] = {"state": "offline"}
    dev2["metadata"]["resourceVersion"] = "9"
    refs = idx.apply(DEVICES, dev2, deleted=False)["edge-1"]
    assert diff(idx, "edge-1", sent, refs) == []
    # moving the device: deleted on the old node (with its model), sent to the new one
    dev3 = copy.deepcopy(dev2)
    dev3["spec"]["nodeName"] = "edge-2"
    affected = idx.apply(DEVICES, dev3, deleted=False)
    assert set(affected) == {"edge-1", "edge-2"}
    gone = diff(idx, "edge-1", sent, affected["edge-1"])
    assert {a.ref.resource for a in gone if a.delete} == {"devices", "devicemodels"}
    assert idx.nodes() == {"edge-2"}


# -- subjects -------------------------------------------------------------------------


def test_hw_subjects_follow_the_mqtt_mapping() -> None:
    s = names.hw_device_subject("default", "sensor.a1", names.HW_TWIN_DELTA)
    assert s == "$hw.events.device.default.sensor//a1.twin.update.delta"
    assert names.subject_to_mqtt_topic(s) == "$hw/events/device/default/sensor.a1/twin/update/delta"
    assert names.mqtt_topic_to_subject("$hw/events/device/default/sensor.a1/twin/update/delta") == s
    assert names.parse_hw_device_subject(s) == ("default", "sensor.a1", "twin.update.delta")
    assert names.hw_node_subject("edge.1", names.HW_MEMBERSHIP_GET) == "$hw.events.node.edge//1.membership.get"
    with pytest.raises(names.InvalidName):
        names.parse_hw_device_subject("$hw.events.device.Bad.x.twin.update")
    assert names.up_kind_filter(names.UP_STATUS, "devices") == "edgebus.up.*.status.devices.>"


def test_hw_payloads() -> None:
    msg = hw.twin_update({"temperature": "21.5"}, ts=5, event_id="e")
    actual, expected, errors = hw.reported_values(msg)
    assert actual == {"temperature": ("21.5", 5)} and not expected and not errors
    _, _, errors = hw.reported_values({"twin": {"a": 1, "b": {"actual": "x"}, "c": {}}})
    assert set(errors) == {"a", "b", "c"}
    for bad in (b"[1]", b"nope", b'{"twin": {}}'):
        with pytest.raises(InvalidMessage):
            hw.reported_values(hw.loads(bad))
