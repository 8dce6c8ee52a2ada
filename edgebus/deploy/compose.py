"""``docker-compose.yml``: the lab as containers, rendered from the lab's own plan.

One image (the repository's Dockerfile); one container per lab process, with the same
command and the same ``EDGEBUS_*`` settings as ``edgebus up`` (only addresses, ports and data
paths differ, see :mod:`edgebus.deploy.plans`); the lab's loopback ports published on
127.0.0.1, so the CLI and kubectl work against it unchanged; a healthcheck on every
container; the nats-server and containerd configs written next to the compose file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebus.deploy.plans import IMAGE, LEAF, MQTT, NATS, LabPlan, ProcSpec, container_plan, lab_plan, portable_argv, service_name

CONFIG_DIR = "deploy/compose"


def _ops_port(spec: ProcSpec) -> int | None:
    for key in ("EDGEBUS_APISERVER__PORT", "EDGEBUS_OPS__PORT"):
        v = spec.env.get(key)
        if v and v != "0":
            return int(v)
    return None


def published(lab: ProcSpec, box: ProcSpec, lab_plan_: LabPlan) -> list[str]:
    """``127.0.0.1:<lab port>:<container port>`` for every port the lab process listens on."""
    pairs: list[tuple[int, int]] = []
    if box.ready_port and lab.ready_port:
        pairs.append((lab.ready_port, box.ready_port))
    if lab.name == "cloud/nats":
        pairs.append((lab_plan_.cloud_leaf_port, LEAF))
    elif lab.name.endswith("/nats"):
        node = lab.group
        pairs.append((lab_plan_.node_mqtt_port(node), MQTT))
    lp, bp = _ops_port(lab), _ops_port(box)
    if lp and bp:
        pairs.append((lp, bp))
    ms_l, ms_b = lab.env.get("EDGEBUS_METAMANAGER__METASERVER_PORT"), box.env.get("EDGEBUS_METAMANAGER__METASERVER_PORT")
    if ms_l and ms_b:
        pairs.append((int(ms_l), int(ms_b)))
    return [f"127.0.0.1:{a}:{b}" for a, b in sorted(set(pairs))]


def healthcheck(spec: ProcSpec) -> dict[str, Any]:
    if spec.ready_socket:
        test = ["CMD", "ctr", "--address", spec.ready_socket, "version"]
    elif spec.ready_url:
        port = _ops_port(spec)
        test = ["CMD", "python", "-c", f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/readyz', timeout=2)"]
    else:
        port = spec.ready_port or NATS
        test = ["CMD", "python", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"]
    return {"test": test, "interval": "5s", "timeout": "3s", "retries": 12, "start_period": "5s"}


def render(nodes: int = 2) -> tuple[dict[str, Any], dict[str, str]]:
    """The compose document and the config files it mounts (path -> text)."""
    lab, box = lab_plan(nodes), container_plan(nodes)
    lab_procs = {p.name: p for p in lab.processes()}
    services: dict[str, Any] = {}
    volumes: dict[str, Any] = {}
    files: dict[str, str] = {}
    servers = {p.group: service_name(p.name) for p in box.processes() if p.name.endswith("/nats")}
    runtimes = {p.group: service_name(p.name) for p in box.processes() if p.ready_socket}
    for spec in box.processes():
        name = service_name(spec.name)
        data_vol = f"{spec.group}-data"
        volumes[data_vol] = {}
        svc: dict[str, Any] = {
            "build": {"context": ".", "dockerfile": "Dockerfile"},
            "image": IMAGE,
            "command": portable_argv(spec),
            "restart": "unless-stopped",
            "volumes": [f"{data_vol}:/data"],
            "healthcheck": healthcheck(spec),
        }
        if spec.env:
            svc["environment"] = dict(sorted(spec.env.items()))
        ports = published(lab_procs[spec.name], spec, lab)
        if ports:
            svc["ports"] = ports
        if spec.config_file and spec.config_text is not None:
            rel = f"{CONFIG_DIR}/{name}{Path(spec.config_file).suffix}"
            files[rel] = spec.config_text
            svc["volumes"].append(f"./{rel}:{spec.config_file}:ro")
        if spec.group != "cloud":
            run_vol = f"{spec.group}-run"
            volumes[run_vol] = {}
            if spec.ready_socket or spec.name.endswith("/edged"):
                svc["volumes"].append(f"{run_vol}:/run/edgebus")
        if spec.ready_socket:
            svc["privileged"] = True  # containerd runs containers (runc, cgroups, mounts)
        deps: dict[str, Any] = {}
        server = servers.get(spec.group)
        if server and server != name and not spec.ready_socket:
            deps[server] = {"condition": "service_healthy"}
        if spec.name.endswith("/edged") and spec.group in runtimes:
            deps[runtimes[spec.group]] = {"condition": "service_healthy"}
        if deps:
            svc["depends_on"] = deps
        services[name] = svc
    doc = {"name": "edgebus", "services": services, "volumes": volumes}
    return doc, files


def processes(nodes: int = 2) -> tuple[list[ProcSpec], list[ProcSpec]]:
    """The lab's processes and their container counterparts, in the same order."""
    return lab_plan(nodes).processes(), container_plan(nodes).processes()
