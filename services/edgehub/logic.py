"""Pure helpers of edgehub: node facts and forwarding bookkeeping."""

from __future__ import annotations

import json
import socket
from typing import Any

import edgebus
from edgebus import hostinfo, names


def node_info() -> dict[str, Any]:
    return {
        **hostinfo.machine(),
        "kubeletVersion": f"v1.30.0-edgebus-{edgebus.__version__}",
        "kubeProxyVersion": "",
        "containerRuntimeVersion": "",
        "systemUUID": "",
    }


def node_status(internal_ip: str) -> dict[str, Any]:
    """The status facts edgehub knows (edged adds runtime facts later); ``internal_ip`` is
    the configured address or the resolved hostname (see :func:`resolve_hostname`)."""
    hostname = socket.gethostname()
    cap = hostinfo.capacity()
    return {
        "addresses": [{"type": "InternalIP", "address": internal_ip or "127.0.0.1"}, {"type": "Hostname", "address": hostname}],
        "nodeInfo": node_info(),
        "capacity": cap,
        "allocatable": dict(cap),
    }


def status_due(last: dict[str, Any] | None, status: dict[str, Any], since_sent: float, report_interval: float) -> bool:
    """Whether the node status is sent now: never sent, changed, or not sent for
    ``report_interval`` seconds."""
    return last is None or status != last or since_sent >= report_interval


def resume_point(cloud_headers: dict[str, str] | None, epoch: str, *more: dict[str, str] | None) -> int:
    """The outbox sequence to resume after: the furthest of what the cloud already has from
    this outbox (the cursor, and the last message forwarded - by a forwarder that wrote no
    cursor); 0 when none is from this outbox (a new outbox starts over)."""
    best = 0
    for h in (cloud_headers, *more):
        if not h or h.get(names.HDR_UP_EPOCH) != epoch:
            continue
        try:
            best = max(best, int(h.get(names.HDR_UP_SEQ, "0")))
        except ValueError:
            continue
    return best


#: server error codes of a refused atomic batch
ATOMIC_DISABLED = 10174
BATCH_DUPLICATE = 10201


def forward_headers(headers: dict[str, str], node_token: str, epoch: str, seq: int) -> dict[str, str]:
    """The headers of an outbox message forwarded to the cloud: its own (not JetStream's),
    a fleet-wide unique ``Nats-Msg-Id``, its outbox sequence and the outbox's identity."""
    out = {k: v for k, v in headers.items() if not k.startswith(names.HDR_NATS_PREFIX)}
    out[names.HDR_MSG_ID] = f"{node_token}:{epoch}:{seq}"
    out[names.HDR_UP_SEQ] = str(seq)
    out[names.HDR_UP_EPOCH] = epoch
    return out


def cursor_headers(epoch: str, seq: int) -> dict[str, str]:
    """The cursor stored with (in the same atomic batch as) the message of outbox sequence
    ``seq``: it replaces the node's previous cursor and never expires, so the resume point
    survives the cloud stream's retention."""
    return {names.HDR_UP_SEQ: str(seq), names.HDR_UP_EPOCH: epoch, names.HDR_TTL: "never", names.HDR_ROLLUP: "sub"}


def newly_dropped(resume: int, first_seq: int, counted_upto: int) -> int:
    """Outbox messages lost before they were forwarded (the outbox's retention dropped them
    while the link was down): those below the outbox's first sequence and after the resume
    point, not counted before."""
    return max(0, first_seq - 1 - max(resume, counted_upto))


def resolve_hostname() -> str:
    """The address the machine's hostname resolves to. Blocking (the system resolver): call
    it off the event loop - with a broken DNS it can take many seconds."""
    return socket.gethostbyname(socket.gethostname())


def leaf_up(leafz: Any, account: str = "EDGE") -> bool | None:
    """Whether a node's server holds its link to the cloud, from its ``LEAFZ`` answer: a
    leaf connection it dialed (``is_spoke``) bound to ``account``. None: not an answer."""
    if not isinstance(leafz, dict) or not isinstance(leafz.get("data"), dict):
        return None
    leafs = leafz["data"].get("leafs")
    if leafs is None:
        return False
    if not isinstance(leafs, list):
        return None
    return any(isinstance(x, dict) and x.get("is_spoke", True) and x.get("account") == account for x in leafs)


def leaf_advisory(data: bytes) -> bool:
    """Whether a connect/disconnect advisory of the node's server is about a leaf connection
    (the cloud link, or a site member's); anything unreadable is not."""
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    client = doc.get("client") if isinstance(doc, dict) else None
    return isinstance(client, dict) and client.get("kind") == "Leafnode"


def outbox_backlog(last_seq: int, forwarded_seq: int, messages: int, nbytes: int, oldest_age: float | None) -> dict[str, Any]:
    """The outbox's backlog: messages stored and not yet in the cloud (after
    ``forwarded_seq``), their bytes (estimated from the outbox's mean message size: the
    stream keeps forwarded messages too, and has no per-range byte count), and the age in
    seconds of the oldest of them (0 when there are none)."""
    pending = max(last_seq - forwarded_seq, 0)
    pending = min(pending, messages) if messages >= 0 else pending
    mean = nbytes / messages if messages > 0 else 0.0
    return {"messages": pending, "bytes": int(round(mean * pending)), "oldestSeconds": round(max(oldest_age or 0.0, 0.0), 1) if pending else 0.0}


def backlog_changed(last: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """Report again when the count or bytes changed (not for the age alone: an idle node
    with an empty outbox sends nothing)."""
    return last is None or (last.get("messages"), last.get("bytes")) != (now.get("messages"), now.get("bytes"))
