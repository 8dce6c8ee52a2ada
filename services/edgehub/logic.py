"""Pure helpers of edgehub: node facts and forwarding bookkeeping."""

from __future__ import annotations

import socket
from typing import Any

import edgebus
from edgebus import hostinfo

#: Header carrying the outbox sequence of a forwarded message (for resync after a cut).
UP_SEQ = "Edgebus-Up-Seq"
#: Header carrying the outbox stream's identity (its creation time), so a wiped and
#: re-created outbox is never mistaken for the old one.
UP_EPOCH = "Edgebus-Up-Epoch"


def node_info() -> dict[str, Any]:
    return {
        **hostinfo.machine(),
        "kubeletVersion": f"v1.30.0-edgebus-{edgebus.__version__}",
        "kubeProxyVersion": "",
        "containerRuntimeVersion": "",
        "systemUUID": "",
    }


def node_status(internal_ip: str = "") -> dict[str, Any]:
    """The status facts edgehub knows (edged adds runtime facts later)."""
    hostname = socket.gethostname()
    ip = internal_ip
    if not ip:
        try:
            ip = socket.gethostbyname(hostname)
        except OSError:
            ip = "127.0.0.1"
    cap = hostinfo.capacity()
    return {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": hostname}],
        "nodeInfo": node_info(),
        "capacity": cap,
        "allocatable": dict(cap),
    }


def resume_point(cloud_headers: dict[str, str] | None, epoch: str) -> int:
    """The outbox sequence to resume after: what the cloud already has from this outbox."""
    if not cloud_headers or cloud_headers.get(UP_EPOCH) != epoch:
        return 0
    try:
        return int(cloud_headers.get(UP_SEQ, "0"))
    except ValueError:
        return 0
