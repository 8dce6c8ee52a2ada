"""Resource usage for ``kubectl top``: containers from their cgroups, the node from /proc.

Every ``metrics_interval`` edged samples each running container (CPU time from
``cpuacct.usage``, working-set memory = ``memory.usage_in_bytes`` minus the inactive file
pages, as the kubelet computes it; cgroup v1, found through the container's init process)
and the node (``/proc/stat``, ``/proc/meminfo``), turns CPU time into a rate over the
interval, and reports one message per node into the outbox
(``edgebus.outbox.<node>.status.metrics._.<node>``): ``{time, window, node: {cpu, memory},
pods: [{namespace, name, containers: [{name, cpu, memory}]}]}``, CPU in nanocores, memory
in bytes. cloudhub keeps the latest per node; the apiserver serves it as
``metrics.k8s.io/v1beta1``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CGROUP_ROOT = "/sys/fs/cgroup"


def cgroup_dirs(pid: int, root: str = CGROUP_ROOT) -> dict[str, str]:
    """controller -> directory of process ``pid``'s cgroup (v1 hierarchies; ``""`` the v2 one)."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for c in controllers.split(",") if controllers else [""]:
            mount = {"cpu": "cpu,cpuacct", "cpuacct": "cpu,cpuacct"}.get(c, c) if c else "unified"
            d = os.path.join(root, mount, path.lstrip("/"))
            if not os.path.isdir(d) and c:
                d = os.path.join(root, c, path.lstrip("/"))
            out[c] = d
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _stat_value(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
    except (OSError, ValueError):
        pass
    return 0


def container_usage(pid: int, root: str = CGROUP_ROOT) -> tuple[int, int] | None:
    """(CPU time in ns, working-set bytes) of the cgroup of ``pid``, or None."""
    dirs = cgroup_dirs(pid, root)
    cpu_dir, mem_dir = dirs.get("cpuacct"), dirs.get("memory")
    if cpu_dir is None or mem_dir is None:
        return None
    cpu = _read_int(os.path.join(cpu_dir, "cpuacct.usage"))
    usage = _read_int(os.path.join(mem_dir, "memory.usage_in_bytes"))
    if cpu is None or usage is None:
        return None
    inactive = _stat_value(os.path.join(mem_dir, "memory.stat"), "total_inactive_file")
    return cpu, max(usage - inactive, 0)


def node_usage() -> tuple[int, int]:
    """(CPU time of the whole node in ns, memory in use in bytes: total minus available)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    cpu_ns = (user + nice + system + irq + softirq + steal) * 1_000_000_000 // CLK_TCK
    mem: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            mem[k] = int(v.split()[0]) * 1024
    return cpu_ns, max(mem.get("MemTotal", 0) - mem.get("MemAvailable", 0), 0)


@dataclass
class Rates:
    """CPU time samples turned into rates (nanocores) between two samples."""

    last: dict[str, tuple[float, int]] = field(default_factory=dict)

    def rate(self, key: str, now: float, cpu_ns: int) -> int | None:
        prev = self.last.get(key)
        self.last[key] = (now, cpu_ns)
        if prev is None or now <= prev[0] or cpu_ns < prev[1]:
            return None
        return int((cpu_ns - prev[1]) / (now - prev[0]))

    def forget_except(self, keys: set[str]) -> None:
        for k in list(self.last):
            if k not in keys:
                del self.last[k]


def report(node: tuple[int | None, int], pods: dict[tuple[str, str], list[dict[str, Any]]], window: float) -> dict[str, Any]:
    """The message for the outbox."""
    return {
        "time": time.time_ns(),
        "window": window,
        "node": {"cpu": node[0], "memory": node[1]},
        "pods": [{"namespace": ns, "name": name, "containers": cs} for (ns, name), cs in sorted(pods.items())],
    }


__all__ = ["Rates", "cgroup_dirs", "container_usage", "node_usage", "report"]
