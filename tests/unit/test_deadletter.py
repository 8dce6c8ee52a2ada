"""The dead-letter copy of a message: bounded, and safe to put in headers."""

from __future__ import annotations

import hashlib

from edgebus import names
from edgebus.bus import BusMsg
from edgebus.bus.deadletter import KEPT_PREFIX, MAX_HEADER_BYTES, MAX_PAYLOAD, MAX_REASON, dead_letter


def test_small_payload_is_kept_whole_with_its_reason() -> None:
    msg = BusMsg("edgebus.up.n.status.pods.ns.p", b"\x01\x02", headers={"Nats-Msg-Id": "x", "Edgebus-Op": "update"}, seq=42)
    data, hdrs = dead_letter(msg, route="ingest", reason="bad\r\nInjected: header")
    assert data == b"\x01\x02"
    assert "Nats-Msg-Id" not in hdrs  # JetStream control headers are not replayed
    assert hdrs["Edgebus-Op"] == "update"
    assert hdrs[names.HDR_ERROR] == "bad  Injected: header"  # no line breaks in a header
    assert hdrs["Edgebus-Subject"] == msg.subject and hdrs["Edgebus-Stream-Seq"] == "42"
    assert hdrs["Edgebus-Payload-Bytes"] == "2" and "Edgebus-Truncated" not in hdrs


def test_oversized_payload_is_a_digest_and_a_prefix() -> None:
    big = bytes(range(256)) * ((MAX_PAYLOAD // 256) + 10)
    data, hdrs = dead_letter(BusMsg("s", big), route="r", reason="x" * 10_000)
    assert data == big[:KEPT_PREFIX]
    assert hdrs["Edgebus-Payload-Sha256"] == hashlib.sha256(big).hexdigest()
    assert hdrs["Edgebus-Payload-Bytes"] == str(len(big)) and hdrs["Edgebus-Truncated"] == "true"
    assert len(hdrs[names.HDR_ERROR]) == MAX_REASON


def test_original_headers_are_bounded() -> None:
    headers = {f"H{i}": "v" * 1000 for i in range(50)}
    _, hdrs = dead_letter(BusMsg("s", b"", headers=headers), route="r", reason="x")
    kept = [k for k in hdrs if k.startswith("H")]
    assert 0 < len(kept) < 50
    assert sum(len(k) + len(hdrs[k]) for k in kept) <= MAX_HEADER_BYTES
