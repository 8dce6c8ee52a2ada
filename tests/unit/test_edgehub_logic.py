"""edgehub's forwarding bookkeeping: resume points, cursor and dropped-message counting."""

from __future__ import annotations

from edgebus import names
from services.edgehub import logic


def h(seq: int, epoch: str = "e1") -> dict[str, str]:
    return {names.HDR_UP_SEQ: str(seq), names.HDR_UP_EPOCH: epoch}


def test_resume_point_takes_the_furthest_record_of_this_outbox() -> None:
    assert logic.resume_point(None, "e1") == 0
    assert logic.resume_point(h(7), "e1") == 7
    assert logic.resume_point(h(7), "e1", h(9)) == 9  # a message forwarded without a cursor
    assert logic.resume_point(h(7), "e1", None) == 7
    assert logic.resume_point(h(7, "old"), "e1", h(3)) == 3  # another (wiped) outbox's cursor
    assert logic.resume_point({names.HDR_UP_SEQ: "x", names.HDR_UP_EPOCH: "e1"}, "e1") == 0


def test_cursor_never_expires_and_replaces_the_previous_one() -> None:
    c = logic.cursor_headers("e1", 42)
    assert c[names.HDR_TTL] == "never" and c[names.HDR_ROLLUP] == "sub"
    assert logic.resume_point(c, "e1") == 42


def test_forward_headers_drop_jetstream_headers_and_carry_identity() -> None:
    out = logic.forward_headers({"Nats-Msg-Id": "local", "Edgebus-Op": "update"}, "edge-1", "e1", 5)
    assert out == {"Edgebus-Op": "update", "Nats-Msg-Id": "edge-1:e1:5", names.HDR_UP_SEQ: "5", names.HDR_UP_EPOCH: "e1"}


def test_newly_dropped_counts_each_lost_message_once() -> None:
    assert logic.newly_dropped(resume=10, first_seq=11, counted_upto=0) == 0  # nothing lost
    assert logic.newly_dropped(resume=10, first_seq=31, counted_upto=0) == 20  # 11..30 aged out
    assert logic.newly_dropped(resume=10, first_seq=31, counted_upto=30) == 0  # counted already
    assert logic.newly_dropped(resume=10, first_seq=41, counted_upto=30) == 10
    assert logic.newly_dropped(resume=50, first_seq=51, counted_upto=0) == 0  # empty outbox, all forwarded


def test_node_status_is_sent_on_change_or_at_the_report_interval() -> None:
    from services.edgehub.logic import status_due

    s = {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}], "capacity": {"cpu": "2"}}
    assert status_due(None, s, 0.0, 300.0), "the first one"
    assert not status_due(s, dict(s), 60.0, 300.0), "unchanged, within the report interval"
    assert status_due(s, {**s, "capacity": {"cpu": "4"}}, 1.0, 300.0), "changed"
    assert status_due(s, dict(s), 300.0, 300.0), "unchanged, but the report interval passed"


def test_only_a_leaf_connections_advisory_wakes_the_link_check() -> None:
    leaf = b'{"type":"io.nats.server.advisory.v1.client_disconnect","client":{"acc":"EDGE","kind":"Leafnode"},"reason":"Client Closed"}'
    client = b'{"type":"io.nats.server.advisory.v1.client_connect","client":{"acc":"EDGE","kind":"Client","name":"edged"}}'
    assert logic.leaf_advisory(leaf)
    assert not logic.leaf_advisory(client)
    for garbage in (b"", b"not json", b"[1,2]", b'{"client":"Leafnode"}', b"\xff\xfe"):
        assert not logic.leaf_advisory(garbage)
