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
from edgebus.objects import device_checks
from edgebus.objects import devices as d
from services.devicecontroller import logic as dc
from services.devicetwin import logic as dt
from services.devicetwin import shapes
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


def test_device_against_model_warns() -> None:
    assert device_checks.device_warnings(device(), MODEL, model_found=True) == []
    bad = device(properties=[{"name": "temperature", "desired": {"value": "1"}}, {"name": "ghost"}, {"name": "setpoint", "desired": {"value": "99"}}],
                 rules=[{"name": "r", "when": "mode > 3", "set": {"temperature": "1", "nope": "1"}}])
    msgs = " | ".join(device_checks.device_warnings(bad, MODEL, model_found=True))
    for frag in ("ReadOnly", "has no property ghost", "above the maximum", "only compare with == and !=", "has no property nope"):
        assert frag in msgs
    assert "does not exist" in " ".join(device_checks.device_warnings(device(), None, model_found=False))


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



def test_state_update_is_checked() -> None:
    assert dt.parse_state({"state": "OK", "reason": "fine"}) == ("OK", "fine")
    assert dt.parse_state({"state": "offline", "reason": 3}) == ("offline", "")
    for bad in ({"state": "sleepy"}, {"state": 1}, {}):
        with pytest.raises(InvalidMessage):
            dt.parse_state(bad)
    assert shapes.event_id(hw.dumps({"event_id": "e1"})) == "e1"
    assert shapes.event_id(b"not json") == ""
    assert "not a member of node edge-1" in shapes.not_member(("default", "t"), "edge-1")


def test_hw_bodies() -> None:
    info, twin = twin_setup()
    infos, twins = {info.key: info}, {info.key: twin}
    body = shapes.delta_message(twin, info, {"setpoint": "22"}, "e2", 5, trigger="e1", rules=["on"])
    assert body["delta"] == {"setpoint": "22"} and body["trigger"] == {"event_id": "e1", "rules": ["on"]} and set(body["twin"]) == {"setpoint"}
    assert "trigger" not in shapes.delta_message(twin, info, {}, "e3", 5)
    assert [e["id"] for e in shapes.membership(twins, infos, "e4", 6)["devices"]] == ["default/t"]
    up = shapes.membership_updated(twins, infos, [info.key, ("default", "gone")], [("default", "old")], "e5", 7)
    assert [e["id"] for e in up["added_devices"]] == ["default/t"]  # a key no longer a member is left out
    assert up["removed_devices"] == [{"id": "default/old", "name": "old", "namespace": "default"}]
    view = shapes.twins_view("edge-1", twins, infos, 3)
    assert view["node"] == "edge-1" and view["firings"] == 3 and set(view["devices"]) == {"default/t"}


def test_mirror_keeps_the_newest_view() -> None:
    a, b = {"spec": 1}, {"spec": 2}
    assert dt.observe(None, a, 5) == ((a, 5), True)
    assert dt.observe((a, 5), b, 4) == (None, False)  # an older view (a re-list racing an event)
    assert dt.observe((a, 5), a, 9) == ((a, 9), False)  # the same object: only the revision moves
    assert dt.observe((a, 5), None, 6) == ((None, 6), True)  # deleted
    table = {("ns", "x"): (a, 3), ("ns", "y"): (a, 8), ("ns", "z"): (None, 1), ("ns", "w"): (a, 2)}
    # not listed at revision 5: x and w are gone; y came from a newer event; z is already deleted
    assert sorted(dt.vanished(table, set(), 5)) == [("ns", "w"), ("ns", "x")]
    assert dt.vanished(table, {("ns", "x"), ("ns", "w")}, 5) == []
    devices = {("default", "t"): (device(), 1), ("other", "t"): (device(), 1), ("default", "u"): (None, 2)}
    assert dt.devices_of_model(devices, ("default", "m")) == [("default", "t")]


# -- devicecontroller ----------------------------------------------------------------


def test_status_merge_never_stale_over_new() -> None:
    dev = device()
    r1 = {"twins": {"temperature": {"reported": {"value": "21", "ts": 100}}, "fan": {"desired": {"value": "true", "ts": 100, "source": "rule:on"}}}, "state": {"value": "online", "reason": "", "ts": 100}, "lastOnline": 100}
    r0 = {"twins": {"temperature": {"reported": {"value": "19", "ts": 50}}, "setpoint": {"reported": {"value": "22", "ts": 50}}}, "state": {"value": "offline", "reason": "x", "ts": 50}}
    assert dc.merge_report(dev, dc.check_report(r1), MODEL)
    assert dc.merge_report(dev, dc.check_report(r0), MODEL)  # only setpoint is new
    tw = {t["propertyName"]: t for t in dev["status"]["twins"]}
    assert tw["temperature"]["reported"] == {"value": "21", "metadata": {"timestamp": "100", "type": "float"}}
    assert tw["setpoint"]["reported"]["value"] == "22"
    assert tw["fan"]["observedDesired"]["metadata"]["source"] == "rule:on"
    assert dev["status"]["state"] == "online" and dev["status"]["lastOnlineTime"].startswith("1970-01-01T00:00:00")
    assert not dc.merge_report(dev, dc.check_report(r0), MODEL)
    # the type a mapper reported is kept, as KubeEdge keeps it; "ok" is a state KubeEdge accepts
    r2 = {"twins": {"temperature": {"reported": {"value": "22", "ts": 200, "type": "integer"}}}, "state": {"value": "ok", "reason": "", "ts": 200}}
    assert dc.merge_report(dev, dc.check_report(r2), MODEL)
    tw = {t["propertyName"]: t for t in dev["status"]["twins"]}
    assert tw["temperature"]["reported"]["metadata"]["type"] == "integer" and dev["status"]["state"] == "ok"
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


# -- KubeEdge's message shapes ----------------------------------------------------------------


def test_kubeedge_shapes() -> None:
    info, twin = twin_setup()
    out = dt.Applied()
    dt.apply_reported(twin, info, {"temperature": ("21.5", 10)}, out, {"temperature": "float32"})
    entry = shapes.membership_entry(twin, info)
    assert entry["id"] == "default/t" and entry["name"] == "t" and entry["namespace"] == "default"
    assert set(entry) >= {"id", "name", "description", "state", "last_online", "attributes", "twin"}
    # value metadata is KubeEdge's: a timestamp only; the mapper's type is kept
    assert entry["twin"]["temperature"] == {"metadata": {"type": "float32"}, "actual": {"value": "21.5", "metadata": {"timestamp": 10}}}
    assert entry["twin"]["setpoint"]["expected"] == {"value": "22", "metadata": {"timestamp": 1000}}
    # a delta lists only twins with an expected value
    assert set(shapes.msg_twin(twin, info, with_expected_only=True)) == {"setpoint"}
    before = {"temperature": shapes.msg_entry(twin, info, "temperature")}
    dt.apply_reported(twin, info, {"temperature": ("22", 11), "fan": ("true", 11)}, dt.Applied())
    doc = shapes.document(before, twin, info, ["temperature", "fan"])
    assert doc["temperature"]["last"]["actual"]["value"] == "21.5" and doc["temperature"]["current"]["actual"]["value"] == "22"
    assert doc["fan"]["last"] is None
    # "OK" (mappers-go) is a state, counted as online
    assert dt.set_state(twin, "OK", "", 50) and twin["state"] == "ok" and twin["lastOnline"] == 50
    assert hw.state_result("e", "t", "ok", "2026-01-01T00:00:00Z") == {"event_id": "e", "timestamp": hw.state_result("e", "t", "ok", "x")["timestamp"], "device": {"name": "t", "state": "ok", "lastOnlineTime": "2026-01-01T00:00:00Z"}}
    msg = {"twin": {"a": {"actual": {"value": "1"}, "metadata": {"type": "integer"}}, "b": {"expected": {"value": ""}, "metadata": {"type": "string"}}}}
    assert hw.reported_types(msg) == {"a": "integer"}
    actual, expected, errors = hw.reported_values(msg)
    assert set(actual) == {"a"} and expected == {} and errors == {}  # an empty expected is no desired value


def test_effective_device_takes_model_defaults() -> None:
    model = {"spec": {"protocolConfigData": {"port": 502, "timeout": 2}, "properties": [{"name": "setpoint", "type": "FLOAT", "visitors": {"protocolName": "modbus", "configData": {"register": "HoldingRegister", "offset": 3}}}]}}
    dev = device(properties=[{"name": "setpoint", "visitors": {"configData": {"offset": 7}}}], protocol={"protocolName": "modbus", "configData": {"timeout": 5}})
    eff = d.effective_device(dev, model)
    assert eff["spec"]["protocol"]["configData"] == {"port": 502, "timeout": 5}
    assert eff["spec"]["properties"][0]["visitors"] == {"protocolName": "modbus", "configData": {"register": "HoldingRegister", "offset": 7}}
    assert dev["spec"]["properties"][0]["visitors"] == {"configData": {"offset": 7}}  # not changed in place
