"""Facts about the machine an edge node runs on (for the Node's status)."""

from __future__ import annotations

import os
import platform

ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _first_line(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def os_image() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def capacity(max_pods: int = 110) -> dict[str, str]:
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_bytes() // 1024}Ki", "pods": str(max_pods)}


def machine() -> dict[str, str]:
    """The machine part of a Node's ``status.nodeInfo``."""
    u = platform.uname()
    return {
        "architecture": ARCH.get(u.machine, u.machine),
        "operatingSystem": u.system.lower(),
        "osImage": os_image(),
        "kernelVersion": u.release,
        "machineID": _first_line("/etc/machine-id"),
        "bootID": _first_line("/proc/sys/kernel/random/boot_id"),
    }
