"""edgebus.envelope: wire roundtrip, headers, and strict rejection of malformed bodies."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus import names
from edgebus.envelope import OP_INSERT, OP_RESPONSE, Envelope, Route, pack, unpack
from edgebus.errors import InvalidMessage

# msgpack-able plain values: what content may carry (lists, not tuples; no NaN, which != itself).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
)
content_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.text(), st.integers(min_value=-(2**63), max_value=2**63 - 1)), inner, max_size=5),
    ),
    max_leaves=20,
)

envelopes = st.builds(
    Envelope,
    route=st.builds(Route, source=st.text(), group=st.text(), operation=st.text(min_size=1), resource=st.text()),
    content=content_values,
    id=st.text(min_size=1),
    parent_id=st.text(),
    timestamp=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    resource_version=st.text(),
    sync=st.booleans(),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
)


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "abc",
        "parent_id": "",
        "timestamp": 1,
        "resource_version": "7",
        "sync": False,
        "seq": 3,
        "route": {"source": "edgecontroller", "group": "resource", "operation": "update", "resource": "pods"},
        "content": {"x": 1},
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def _decode(body: Any) -> Envelope:
    return Envelope.decode(msgpack.packb(body, use_bin_type=True))


# ---------------------------------------------------------------------------------------
# Roundtrip and headers
# ---------------------------------------------------------------------------------------


@given(envelopes)
def test_encode_decode_roundtrip(env: Envelope) -> None:
    assert Envelope.decode(env.encode()) == env


@given(content_values)
def test_pack_unpack_roundtrip(value: Any) -> None:
    assert unpack(pack(value)) == value


def test_unpack_rejects_garbage() -> None:
    with pytest.raises(InvalidMessage, match="not msgpack"):
        unpack(b"\xc1")


def test_new_and_reply() -> None:
    env = Envelope.new(source="apiserver", operation=OP_INSERT, resource="pods", content={"a": 1}, seq=4)
    assert env.id and len(env.id) == 32
    assert env.timestamp > 0
    assert Envelope.new(source="a", operation=OP_INSERT).id != Envelope.new(source="a", operation=OP_INSERT).id
    assert Envelope.new(source="a", operation=OP_INSERT, id="fixed").id == "fixed"
    r = env.reply(source="metamanager", content="ok")
    assert r.parent_id == env.id
    assert r.id != env.id
    assert r.route == Route(source="metamanager", group="", operation=OP_RESPONSE, resource="pods")
    assert Envelope.decode(r.encode()) == r


def test_headers_full() -> None:
    env = Envelope.new(
        source="edgecontroller", operation="update", resource="pods", resource_version="42", parent_id="p1", seq=9
    )
    h = env.headers()
    assert h[names.HDR_MSG_ID] == env.id
    assert h[names.HDR_OP] == "update"
    assert h[names.HDR_SOURCE] == "edgecontroller"
    assert h[names.HDR_RESOURCE] == "pods"
    assert h[names.HDR_RV] == "42"
    assert h[names.HDR_PARENT] == "p1"
    assert h[names.HDR_SYNC] == "9"
    assert h[names.CONTENT_TYPE] == names.MSGPACK
    assert all(isinstance(v, str) for v in h.values())


def test_headers_minimal_omit_empty_fields() -> None:
    h = Envelope.new(source="x", operation="keepalive").headers()
    assert set(h) == {names.HDR_MSG_ID, names.HDR_OP, names.HDR_SOURCE, names.CONTENT_TYPE}


@given(envelopes)
def test_headers_always_carry_id_and_op(env: Envelope) -> None:
    h = env.headers()
    assert h[names.HDR_MSG_ID] == env.id
    assert h[names.HDR_OP] == env.route.operation


# ---------------------------------------------------------------------------------------
# Malformed input
# ---------------------------------------------------------------------------------------


def test_valid_body_decodes() -> None:
    env = _decode(_body())
    assert env.id == "abc" and env.seq == 3 and env.route.operation == "update" and env.content == {"x": 1}


def test_missing_optional_fields_take_defaults() -> None:
    env = _decode({"id": "i", "route": {"operation": "delete"}})
    assert env.parent_id == "" and env.timestamp == 0 and env.seq == 0 and env.sync is False
    assert env.content is None and env.route.source == ""


def test_none_values_mean_defaults() -> None:
    env = _decode(_body(parent_id=None, seq=None, timestamp=None))
    assert (env.parent_id, env.seq, env.timestamp) == ("", 0, 0)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xc1", "not msgpack"),
        (b"", "not msgpack"),
        (b"\x92\x01", "not msgpack"),  # truncated array
        (msgpack.packb({"id": "a"}) + b"\x00", "not msgpack"),  # trailing bytes
        (msgpack.packb([1, 2, 3]), "must be a map, got list"),
        (msgpack.packb("text"), "must be a map, got str"),
        (msgpack.packb(None), "must be a map, got NoneType"),
    ],
)
def test_not_an_envelope(data: bytes, match: str) -> None:
    with pytest.raises(InvalidMessage, match=match):
        Envelope.decode(data)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (_body(route=_DROP), "no route"),
        (_body(route="update"), "no route"),
        (_body(route=["update"]), "no route"),
        (_body(id=5), "id must be a string, got int"),
        (_body(id=b"abc"), "id must be a string, got bytes"),
        (_body(seq="3"), "seq must be an integer, got str"),
        (_body(seq=1.5), "seq must be an integer, got float"),
        (_body(timestamp=True), "timestamp must be an integer, got bool"),
        (_body(resource_version=7), "resource_version must be a string, got int"),
        (_body(route={"operation": 1}), "operation must be a string, got int"),
        (_body(route={"operation": "update", "source": ["x"]}), "source must be a string, got list"),
        (_body(route={"source": "x"}), "no route.operation"),
        (_body(route={"operation": ""}), "no route.operation"),
        (_body(id=""), "no id"),
        (_body(id=_DROP), "no id"),
    ],
)
def test_malformed_envelope(body: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidMessage, match=match):
        _decode(body)


def test_unhashable_map_key_is_invalid_message() -> None:
    # A map with a map as key: msgpack itself fails (unhashable), which must still be InvalidMessage.
    data = b"\x81\x81\x01\x02\x03"  # {{1: 2}: 3}
    with pytest.raises(InvalidMessage):
        Envelope.decode(data)


# ---------------------------------------------------------------------------------------
# Fuzz: nothing but InvalidMessage ever escapes decode
# ---------------------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    try:
        env = Envelope.decode(data)
    except InvalidMessage:
        return
    assert isinstance(env, Envelope) and env.id and env.route.operation


_FIELDS = ["id", "parent_id", "timestamp", "resource_version", "sync", "seq", "route", "content"]
_ROUTE_FIELDS = ["source", "group", "operation", "resource"]
_shallow = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=3))


@settings(max_examples=150)
@given(
    st.dictionaries(
        st.sampled_from(_FIELDS),
        st.one_of(_shallow, st.dictionaries(st.sampled_from(_ROUTE_FIELDS), _shallow)),
    )
)
def test_decode_arbitrary_envelope_shaped_maps(body: dict[str, Any]) -> None:
    try:
        env = _decode(body)
    except InvalidMessage:
        return
    assert isinstance(env.id, str) and env.id
    assert isinstance(env.seq, int) and isinstance(env.timestamp, int)
    assert isinstance(env.route.operation, str) and env.route.operation


def test_fields_at_their_default_stay_off_the_wire() -> None:
    bare = Envelope.new(source="edgehub", operation="keepalive", resource="nodes", content={"time": 1})
    raw = msgpack.unpackb(bare.encode())
    assert set(raw) == {"id", "timestamp", "route", "content"} and set(raw["route"]) == {"source", "operation", "resource"}
    assert Envelope.decode(bare.encode()) == bare
    full = Envelope.new(source="s", group="g", operation="update", resource="pods", content={"x": 1}, parent_id="p", resource_version="7", seq=3, sync=True)
    assert set(msgpack.unpackb(full.encode())) == {"id", "timestamp", "route", "content", "parent_id", "resource_version", "sync", "seq"}
    assert Envelope.decode(full.encode()) == full
