"""Drive a lab through the real CLI, as a user would (for end-to-end tests)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebus.lab import LabPlan, port_free


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_base_port(nodes: int, host: str = "127.0.0.1", **plan_kw: Any) -> int:
    """A base port whose whole block is free and below the ephemeral range: a client
    polling a port there before its server listens could otherwise connect to itself (TCP
    simultaneous open from the same port) and take the port away from the server."""
    top = _ephemeral_low() - 400
    for _ in range(200):
        base = random.randrange(15000, max(top, 15010), 10)
        plan = LabPlan(data_dir="/nonexistent", nodes=[f"edge-{i}" for i in range(1, nodes + 1)], base_port=base, **plan_kw)
        if all(port_free(host, p) for p in plan.all_ports()):
            return base
    raise RuntimeError("no free port block found")


@dataclass
class LabCli:
    data_dir: Path

    def run(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBUS_")}
        cp = subprocess.run(
            [sys.executable, "-m", "edgebus.cli.main", "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            input=input,
        )
        if check and cp.returncode != 0:
            raise AssertionError(f"edgebus {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
        return cp

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "lab.json").read_text()))
