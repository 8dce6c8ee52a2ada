"""Which optional edge services a node needs (pure logic of edgebus.allinone.ondemand)."""

from __future__ import annotations

from edgebus.allinone.ondemand import Linger, needed
from edgebus.allinone.settings import member_env, member_prefix


def device(name: str, protocol: str, node: str | None = "edge-1") -> dict:
    spec: dict = {"protocol": {"protocolName": protocol}}
    if node is not None:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_a_mapper_is_needed_for_a_device_of_its_protocol_on_this_node() -> None:
    assert needed("edge-1", [], []) == set()
    assert needed("edge-1", [device("a", "modbus")], []) == {"mappers.modbus"}
    assert needed("edge-1", [device("a", "modbus"), device("b", "opcua")], []) == {"mappers.modbus", "mappers.opcua"}
    assert needed("edge-1", [device("a", "modbus", node="edge-2")], []) == set(), "another node's device"
    assert needed("edge-1", [device("a", "bacnet")], []) == set(), "no built-in mapper for it"
    assert needed("edge-1", [{"metadata": {"name": "x"}, "spec": "garbage"}], []) == set(), "bad input needs nothing"


def test_edgemesh_is_needed_while_there_are_services() -> None:
    assert needed("edge-1", [], [{"metadata": {"name": "web"}}]) == {"edgemesh"}


def test_a_service_stays_wanted_for_the_linger_time() -> None:
    lg = Linger(60.0)
    assert lg.wanted({"mappers.modbus"}, 0.0) == {"mappers.modbus"}
    assert lg.next_change({"mappers.modbus"}, 0.0) is None
    assert lg.wanted(set(), 10.0) == {"mappers.modbus"}, "still lingering"
    assert lg.next_change(set(), 10.0) == 50.0
    assert lg.wanted(set(), 61.0) == set()
    assert lg.next_change(set(), 61.0) is None
    assert lg.wanted({"mappers.modbus"}, 62.0) == {"mappers.modbus"}, "needed again"
    assert Linger(0.0).wanted(set(), 0.0) == set()


def test_each_service_has_its_own_settings_prefix() -> None:
    assert member_prefix("mappers.modbus") == "EDGEBUS_SVC_MAPPERS_MODBUS__"
    env = member_env("edgehub", {"node": "edge-1", "nats": {"nkey_file": "/x/edgehub.nk"}})
    assert env == {"EDGEBUS_SVC_EDGEHUB__NODE": "edge-1", "EDGEBUS_SVC_EDGEHUB__NATS__NKEY_FILE": "/x/edgehub.nk"}


def test_a_service_inside_reads_only_its_own_prefix(monkeypatch) -> None:
    from services.edgehub.config import Settings as HubSettings
    from services.metamanager.config import Settings as MetaSettings

    for k, v in {**member_env("edgehub", {"node": "edge-1", "nats": {"nkey_file": "/k/edgehub.nk"}, "edgehub": {"heartbeat_interval": 3}}),
                 **member_env("metamanager", {"node": "edge-1", "nats": {"nkey_file": "/k/metamanager.nk"}})}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EDGEBUS_NATS__NKEY_FILE", "/k/shared.nk")  # the process's own: not a service's
    hub = HubSettings(_env_prefix=member_prefix("edgehub"))
    mm = MetaSettings(_env_prefix=member_prefix("metamanager"))
    assert (hub.node, hub.nats.nkey_file, hub.edgehub.heartbeat_interval) == ("edge-1", "/k/edgehub.nk", 3.0)
    assert mm.nats.nkey_file == "/k/metamanager.nk"
