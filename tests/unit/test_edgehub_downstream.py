"""edgehub's downstream: what a node stores of a pulled message, and which redelivery it skips."""

from __future__ import annotations

from edgebus import names, topology
from services.edgehub.downstream import is_newer, local_headers


def test_local_copy_keeps_edgebus_headers_and_records_the_cloud_sequence() -> None:
    h = local_headers({"Edgebus-Op": "update", "Nats-Expected-Stream": "EDGEBUS_DOWN", "Nats-Msg-Id": "x"}, 42)
    assert h == {"Edgebus-Op": "update", names.HDR_DOWN_SEQ: "42"}
    assert local_headers(None, 1) == {names.HDR_DOWN_SEQ: "1"}


def test_a_redelivery_is_applied_only_when_newer_than_what_the_node_holds() -> None:
    assert is_newer(None, 5)
    assert is_newer({names.HDR_DOWN_SEQ: "4"}, 5)
    assert not is_newer({names.HDR_DOWN_SEQ: "5"}, 5)
    assert not is_newer({names.HDR_DOWN_SEQ: "9"}, 5)
    assert is_newer({names.HDR_DOWN_SEQ: "junk"}, 5)
    assert is_newer({}, 5)


def test_the_node_consumer_is_durable_named_by_the_node_and_filtered_to_it() -> None:
    spec = topology.down_consumer("edge-1.site")
    cfg = spec.to_config()
    assert cfg.durable_name == "edge-1_site" == names.down_consumer("edge-1.site")
    assert cfg.filter_subject == names.down_filter("edge-1.site")
    assert cfg.inactive_threshold is None  # kept while the node is offline, however long
    down = topology.edge_down("edge-1.site")
    assert down.subjects == (names.down_filter("edge-1.site"),) and not down.sources
