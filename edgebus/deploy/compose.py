"""``docker-compose.yml``: the lab as containers, rendered from the lab's own plan.

One image (the repository's Dockerfile); one container per lab process, with the same
command and the same ``EDGEBUS_*`` settings as ``edgebus up`` (only addresses, ports and data
paths differ, see :mod:`edgebus.deploy.plans`), secure as the lab is: one-shot containers
(:mod:`edgebus.deploy.boot`) make the cloud's PKI and the hub's config before the cloud
starts, a bootstrap token once the apiserver is up, and join each node with it before its
server starts. The lab's loopback ports are published on ``${EDGEBUS_BIND:-127.0.0.1}``, each
configurable (``deploy/compose/ports.env`` lists them), so the host's CLI and kubectl work
against it with the files the cloud's boot step writes to ``./.edgebus-compose``.

Networks: ``cloud`` (the cloud's containers, each node's NATS server for its leaf link, and
the join step) and one per node (its containers): cutting a node's link is disconnecting its
NATS server from ``cloud``. edged (or the all-in-one process) shares the network namespace of
its node's containerd, where the pods run, so it probes them and reports their address.
containerd runs runc without ``privileged``: the capabilities runc needs, no seccomp
profile, and the host's cgroup hierarchy writable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebus.deploy.plans import API, IMAGE, LEAF, MQTT, NATS, LabPlan, ProcSpec, container_plan, lab_plan, portable_argv, service_name

CONFIG_DIR = "deploy/compose"
PORTS_ENV = f"{CONFIG_DIR}/ports.env"
#: where the host's edgebus and kubectl find the CA, the admin's token and a kubeconfig
HOST_DIR = ".edgebus-compose"
CLOUD_NET = "cloud"
#: what containerd needs to run pods with runc (beyond Docker's default capabilities)
RUNTIME_CAPS = ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"]
BOOT = ["python", "-m", "edgebus.deploy.boot"]


def _ops_port(spec: ProcSpec) -> int | None:
    for key in ("EDGEBUS_APISERVER__PORT", "EDGEBUS_OPS__PORT"):
        v = spec.env.get(key)
        if v and v != "0":
            return int(v)
    return None


def port_var(service: str, container_port: int) -> str:
    """``CLOUD_APISERVER_PORT``, ``EDGE_1_NATS_MQTT_PORT``: the variable a published port reads."""
    kind = {LEAF: "_LEAF", MQTT: "_MQTT", 10550: "_METASERVER", 5020: "_MODBUS", 9090: "_OPS"}.get(container_port, "")
    return f"{service.upper().replace('-', '_')}{kind}_PORT"


def published(lab: ProcSpec, box: ProcSpec, lab_plan_: LabPlan) -> list[tuple[str, int, int]]:
    """(variable, the lab's port as its default, the container's port) for every port the
    lab process listens on."""
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
    name = service_name(box.name)
    return [(port_var(name, b), a, b) for a, b in sorted(set(pairs))]


def _port_strings(ports: list[tuple[str, int, int]]) -> list[str]:
    return [f"${{EDGEBUS_BIND:-127.0.0.1}}:${{{var}:-{default}}}:{inner}" for var, default, inner in ports]


def healthcheck(spec: ProcSpec) -> dict[str, Any]:
    if spec.ready_socket:
        test = ["CMD", "ctr", "--address", spec.ready_socket, "version"]
    elif spec.ready_url and spec.ready_url.startswith("https://"):
        ca = spec.env.get("EDGEBUS_APISERVER__CA_FILE", "/data/cloud/pki/ca.crt")
        port = _ops_port(spec)
        code = f"import ssl, urllib.request; urllib.request.urlopen('https://127.0.0.1:{port}/readyz', timeout=2, context=ssl.create_default_context(cafile='{ca}'))"
        test = ["CMD", "python", "-c", code]
    elif spec.ready_url:  # busybox (in the image): a check every few seconds in every container costs next to nothing
        port = _ops_port(spec)
        get = f"printf 'GET /readyz HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' | busybox timeout 2 busybox nc 127.0.0.1 {port} | busybox head -n 1 | busybox grep -q ' 200 '"
        test = ["CMD", "busybox", "sh", "-c", get]
    else:  # the server answers: a NATS server greets every client with INFO; the simulator accepts
        port = spec.ready_port or NATS
        if spec.name.endswith("/nats"):
            test = ["CMD", "busybox", "sh", "-c", f"busybox timeout 2 busybox nc 127.0.0.1 {port} </dev/null | busybox grep -q '^INFO '"]
        else:
            test = ["CMD", "python", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"]
    return {"test": test, "interval": "5s", "timeout": "5s", "retries": 24, "start_period": "10s"}


def _base(command: list[str], volumes: list[str]) -> dict[str, Any]:
    return {"build": {"context": ".", "dockerfile": "Dockerfile"}, "image": IMAGE, "command": command, "volumes": volumes}


def boot_services(plan: LabPlan, lab: LabPlan, nodes: int, all_in_one: bool) -> dict[str, dict[str, Any]]:
    """The one-shot steps (see :mod:`edgebus.deploy.boot`), by the service they run before."""
    flags = ["--nodes", str(nodes), *(["--all-in-one"] if all_in_one else [])]
    once = {"restart": "no"}
    out: dict[str, dict[str, Any]] = {}
    out["cloud-init"] = {
        **_base([*BOOT, "cloud", *flags], ["cloud-data:/data", f"./{HOST_DIR}:/host"]),
        **once,
        "environment": {
            "EDGEBUS_BOOT_HOST_DIR": "/host",
            "EDGEBUS_BOOT_BIND": "${EDGEBUS_BIND:-127.0.0.1}",
            "EDGEBUS_BOOT_API_PORT": f"${{{port_var('cloud-apiserver', API)}:-{lab.apiserver_port}}}",
            "EDGEBUS_BOOT_NATS_PORT": f"${{{port_var('cloud-nats', NATS)}:-{lab.cloud_nats_port}}}",
        },
        "networks": [CLOUD_NET],
    }
    cloud_up = {"cloud-apiserver": {"condition": "service_healthy"}, "cloud-cloudhub": {"condition": "service_healthy"}}
    out["cloud-token"] = {**_base([*BOOT, "token", *flags], ["cloud-data:/data", "bootstrap:/bootstrap"]), **once, "depends_on": cloud_up, "networks": [CLOUD_NET]}
    for n in plan.nodes:
        out[f"{n}-join"] = {
            **_base([*BOOT, "node", n, *flags], [f"{n}-data:/data", "bootstrap:/bootstrap:ro"]),
            **once,
            "depends_on": {**cloud_up, "cloud-token": {"condition": "service_completed_successfully"}},
            "networks": [CLOUD_NET],
        }
    return out


def render(nodes: int = 2, *, all_in_one: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The compose document and the config files it mounts (path -> text); with
    ``all_in_one`` each node's edge services share one container (``python -m
    edgebus.allinone``) beside its nats-server and containerd. Compose cannot start a
    container on demand: process-per-service runs the mappers and edgemesh from the start,
    the all-in-one container starts them inside itself when the node needs them."""
    lab, box = lab_plan(nodes, all_in_one=all_in_one, secure=True), container_plan(nodes, all_in_one=all_in_one, secure=True)
    lab_procs = {p.name: p for p in lab.processes()}
    boot = boot_services(box, lab, nodes, all_in_one)
    services: dict[str, Any] = {"cloud-init": boot["cloud-init"]}
    volumes: dict[str, Any] = {"bootstrap": {}}
    networks: dict[str, Any] = {CLOUD_NET: {}}
    files: dict[str, str] = {}
    env_lines: list[str] = ["# The host ports of the compose lab (defaults: the lab's). Copy to .env, or", "# docker compose --env-file deploy/compose/ports.env up.", "EDGEBUS_BIND=127.0.0.1"]
    servers = {p.group: service_name(p.name) for p in box.processes() if p.name.endswith("/nats")}
    runtimes = {p.group: service_name(p.name) for p in box.processes() if p.ready_socket}
    shares_runtime = {service_name(p.name): runtimes[p.group] for p in box.processes() if p.name.endswith(("/edged", "/allinone")) and p.group in runtimes}
    for spec in box.processes():
        name = service_name(spec.name)
        if spec.group != "cloud" and f"{spec.group}-join" not in services:
            services[f"{spec.group}-join"] = boot[f"{spec.group}-join"]
            networks[spec.group] = {}
        data_vol = f"{spec.group}-data"
        volumes[data_vol] = {}
        svc: dict[str, Any] = {**_base(portable_argv(spec), [f"{data_vol}:/data"]), "restart": "unless-stopped", "healthcheck": healthcheck(spec)}
        if spec.env:
            svc["environment"] = dict(sorted(spec.env.items()))
        ports = published(lab_procs[spec.name], spec, lab)
        env_lines += [f"{var}={default}" for var, default, _ in ports]
        if ports and name not in shares_runtime:
            svc["ports"] = _port_strings(ports)
        if spec.config_file and spec.config_text is not None:
            rel = f"{CONFIG_DIR}/{name}{Path(spec.config_file).suffix}"
            files[rel] = spec.config_text
            svc["volumes"].append(f"./{rel}:{spec.config_file}:ro")
        if spec.group != "cloud":
            run_vol = f"{spec.group}-run"
            volumes[run_vol] = {}
            if spec.ready_socket or name in shares_runtime:
                svc["volumes"].append(f"{run_vol}:/run/edgebus")
        if spec.ready_socket:  # containerd runs pods (runc: namespaces, mounts, cgroups)
            svc["cap_add"] = list(RUNTIME_CAPS)
            svc["security_opt"] = ["seccomp=unconfined", "apparmor=unconfined"]
            svc["volumes"].append("/sys/fs/cgroup:/sys/fs/cgroup:rw")
            shared = [s for s, r in shares_runtime.items() if r == name]
            extra = [pt for s in shared for pt in published(lab_procs[next(p.name for p in box.processes() if service_name(p.name) == s)], next(p for p in box.processes() if service_name(p.name) == s), lab)]
            if extra:
                svc["ports"] = _port_strings(extra)
        if name in shares_runtime:
            svc["network_mode"] = f"service:{shares_runtime[name]}"
        else:
            svc["networks"] = [CLOUD_NET] if spec.group == "cloud" else ([spec.group, CLOUD_NET] if name == servers.get(spec.group) else [spec.group])
        deps: dict[str, Any] = {}
        server = servers.get(spec.group)
        if name == server:
            deps["cloud-init" if spec.group == "cloud" else f"{spec.group}-join"] = {"condition": "service_completed_successfully"}
        elif server and not spec.ready_socket:
            deps[server] = {"condition": "service_healthy"}
        if name in shares_runtime:
            deps[shares_runtime[name]] = {"condition": "service_healthy"}
        if deps:
            svc["depends_on"] = deps
        services[name] = svc
    # the token once the cloud is up, before the first node joins
    ordered: dict[str, Any] = {}
    for k, v in services.items():
        if k == "edge-1-join" or (k.endswith("-join") and "cloud-token" not in ordered):
            ordered["cloud-token"] = boot["cloud-token"]
        ordered[k] = v
    doc = {"name": "edgebus", "services": ordered, "networks": networks, "volumes": volumes}
    files[PORTS_ENV] = "\n".join(env_lines) + "\n"
    return doc, files


def processes(nodes: int = 2, *, all_in_one: bool = False) -> tuple[list[ProcSpec], list[ProcSpec]]:
    """The lab's processes and their container counterparts, in the same order."""
    return lab_plan(nodes, all_in_one=all_in_one, secure=True).processes(), container_plan(nodes, all_in_one=all_in_one, secure=True).processes()
