"""Pure helpers of edgehub: node facts and forwarding bookkeeping."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

import edgebus

#: Header carrying the outbox sequence of a forwarded message (for resync after a cut).
UP_SEQ = "Edgebus-Up-Seq"
#: Header carrying the outbox stream's identity (its creation time), so a wiped and
#: re-created outbox is never mistaken for the old one.
UP_EPOCH = "Edgebus-Up-Epoch"


def node_info() -> dict[str, Any]:
    u = platform.uname()
    os_image = "unknown"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_image = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(u.machine, u.machine),
        "operatingSystem": u.system.lower(),
        "osImage": os_image,
        "kernelVersion": u.release,
        "kubeletVersion": f"v1.30.0-edgebus-{edgebus.__version__}",
        "kubeProxyVersion": "",
        "containerRuntimeVersion": "",
        "machineID": _read("/etc/machine-id"),
        "bootID": _read("/proc/sys/kernel/random/boot_id"),
        "systemUUID": "",
    }


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def node_status(internal_ip: str = "") -> dict[str, Any]:
    """The status facts edgehub knows (edged adds runtime facts later)."""
    hostname = socket.gethostname()
    ip = internal_ip
    if not ip:
        try:
            ip = socket.gethostbyname(hostname)
        except OSError:
            ip = "127.0.0.1"
    cap = {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_bytes() // 1024}Ki", "pods": "110"}
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
