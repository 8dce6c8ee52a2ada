"""systemd units for a multi-host install (``edgebus cloud|node install --systemd``).

A unit runs the same foreground command an operator runs by hand (``edgebus cloud start``,
``edgebus node start``) with the interpreter edgebus is installed in. The command's own
supervisor restarts a crashed service and stops everything (pods first) on SIGTERM, so the
unit only needs to start it at boot, restart the supervisor itself if it dies, and give it
time to stop: ``KillMode=mixed`` sends SIGTERM to the supervisor alone and SIGKILL to
whatever is left after ``TimeoutStopSec``.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

CLOUD_UNIT = "edgebus-cloud.service"
NODE_UNIT = "edgebus-node.service"
UNIT_DIR = "/etc/systemd/system"


def edgebus_command() -> list[str]:
    """How this installation runs ``edgebus``: the console script beside the interpreter
    (a venv's ``bin/edgebus``), else ``python -m edgebus.cli.main``."""
    script = Path(sys.executable).parent / "edgebus"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgebus.cli.main"]


@dataclass
class Unit:
    description: str
    argv: list[str]
    #: the dir the command keeps its state in (created with mode 0700 by the command)
    data_dir: str
    environment: dict[str, str] = field(default_factory=dict)
    #: paths that must exist before systemd starts the unit (e.g. a node's credential)
    requires_paths: list[str] = field(default_factory=list)
    #: containerd places pods in cgroups of their own below the unit's
    delegate: bool = False
    stop_timeout: int = 90

    def render(self) -> str:
        env = {"PYTHONUNBUFFERED": "1", **self.environment}
        lines = [
            "# Written by `edgebus ... install --systemd`; run `systemctl daemon-reload` after a change.",
            "[Unit]",
            f"Description={self.description}",
            "Wants=network-online.target",
            "After=network-online.target",
            *(f"ConditionPathExists={p}" for p in self.requires_paths),
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={shlex.join(self.argv)}",
            "Environment=" + " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items())),
            "Restart=always",
            "RestartSec=5",
            "KillMode=mixed",
            "KillSignal=SIGTERM",
            f"TimeoutStopSec={self.stop_timeout}",
            "LimitNOFILE=1048576",
            *(["Delegate=yes"] if self.delegate else []),
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
        return "\n".join(lines)


def cloud_unit(*, data_dir: str, address: str, listen: str | None = None, grace: float = 40.0, devices: bool = True, extra_hosts: list[str] | None = None, log_level: str = "INFO") -> Unit:
    argv = [*edgebus_command(), "--data-dir", data_dir, "cloud", "start", "--address", address]
    argv += ["--listen", listen] if listen else []
    argv += ["--grace", f"{grace:g}", "--log-level", log_level]
    argv += [] if devices else ["--no-devices"]
    for h in extra_hosts or []:
        argv += ["--san", h]
    return Unit("edgebus cloud (apiserver, cloudhub, controllers, NATS hub)", argv, data_dir, environment={"EDGEBUS_LAB_DIR": data_dir})


def node_unit(*, node_dir: str, host: str = "127.0.0.1", containerd: bool | None = None, all_in_one: bool = False, heartbeat: float = 10.0) -> Unit:
    argv = [*edgebus_command(), "node", "start", "--node-dir", node_dir, "--host", host, "--heartbeat", f"{heartbeat:g}"]
    if containerd is not None:
        argv += ["--containerd" if containerd else "--no-containerd"]
    argv += ["--all-in-one"] if all_in_one else []
    creds = str(Path(node_dir, "identity", "node.creds"))
    return Unit("edgebus edge node (edgehub, metamanager, edged, devices, NATS leaf)", argv, node_dir, requires_paths=[creds], delegate=True)


def write_unit(unit: Unit, unit_dir: str | Path, name: str) -> Path:
    path = Path(unit_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit.render())
    path.chmod(0o644)
    return path
