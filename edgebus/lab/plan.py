"""The lab's plan: every process of a cloud and N edge nodes on one machine - its command,
its ``EDGEBUS_*`` settings, its ports (a block per node), data dir and log file.

The docker-compose file and the Kubernetes manifests are rendered from this same plan
(:mod:`edgebus.deploy`), so they run exactly what ``edgebus up`` runs.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgebus import names
from edgebus.cri.containerd import ContainerdConfig, containerd_binary, usable
from edgebus.images import BUSYBOX_IMAGE, PAUSE_IMAGE, archive_path
from edgebus.natsd import HubConfig, LeafConfig, nats_server_binary
from edgebus.runtime.settings import to_env

DEFAULT_DIR = Path(os.environ.get("EDGEBUS_LAB_DIR", str(Path.home() / ".edgebus" / "lab")))
DEFAULT_BASE_PORT = 14200
#: the metaserver's port in each node's 10-port block
METASERVER_SLOT = 9
CLOUD_SERVICES = ("apiserver", "cloudhub", "edgecontroller", "devicecontroller", "endpointcontroller")
EDGE_SERVICES = ("edgehub", "metamanager")
#: each node's port block: slots 0..9 as below, 10..19 for edgemesh and later additions
NODE_BLOCK = 20
#: Device services of every node, each at a fixed offset in the node's 10-port block (its
#: ops port); the first node also runs a simulated Modbus thermostat at SIM_MODBUS_SLOT.
DEVICE_SERVICES = {"devicetwin": 5, "mappers.modbus": 6, "mappers.opcua": 7}
SIM_MODBUS_SLOT = 8
#: edged's ops port in each node's block; the node's private containerd has no TCP port
EDGED_SLOT = 4
#: edgemesh's ops port and DNS port (UDP and TCP) in each node's block
EDGEMESH_SLOT = 10
MESH_DNS_SLOT = 11


@dataclass
class ProcSpec:
    """One process of the lab."""

    name: str  # e.g. "cloud/apiserver", "edge-1/nats"
    group: str  # "cloud" or a node name
    argv: list[str]
    env: dict[str, str]
    log: str
    ready_url: str | None = None  # HTTP readiness probe
    ready_port: int | None = None  # TCP readiness (nats-server)
    ready_socket: str | None = None  # Unix socket readiness (containerd)
    #: a container runtime: its pods are stopped before it (and removed on ``down``)
    cri_address: str | None = None
    config_file: str | None = None
    config_text: str | None = None


@dataclass
class LabPlan:
    data_dir: str
    nodes: list[str]
    base_port: int = DEFAULT_BASE_PORT
    host: str = "127.0.0.1"
    token: str = ""
    grace: float = 40.0
    heartbeat: float = 10.0
    status_interval: float = 60.0
    log_level: str = "INFO"
    #: per node, the hub leafnode URL it dials when not the hub's own (a NAT, a proxy)
    leaf_urls: dict[str, str] = field(default_factory=dict)
    #: run devicecontroller, devicetwin and the mappers, and the simulated Modbus device
    devices: bool = True
    #: a private containerd per node: None = when possible (root, containerd installed)
    containerd: bool | None = None
    #: where the lab's OCI image archives are (None: the user's cache, see edgebus.images)
    image_cache: str | None = None
    #: cloud services to run as several processes, e.g. {"edgecontroller": 2}
    replicas: dict[str, int] = field(default_factory=dict)

    # -- ports ------------------------------------------------------------------------
    @property
    def cloud_nats_port(self) -> int:
        return self.base_port

    @property
    def cloud_leaf_port(self) -> int:
        return self.base_port + 1

    @property
    def apiserver_port(self) -> int:
        return self.base_port + 2

    def cloud_ops_port(self, service: str) -> int:
        return self.base_port + 3 + CLOUD_SERVICES.index(service)

    def node_base(self, node: str) -> int:
        """Node *i* (0-based) has the ports ``base + 10 + NODE_BLOCK·i`` and on (the cloud
        has ``base .. base + 9``)."""
        return self.base_port + 10 + NODE_BLOCK * self.nodes.index(node)

    def node_nats_port(self, node: str) -> int:
        return self.node_base(node)

    def node_mqtt_port(self, node: str) -> int:
        return self.node_base(node) + 1

    def metaserver_port(self, node: str) -> int:
        """The node's metaserver: kubectl against the node's own store."""
        return self.node_base(node) + METASERVER_SLOT

    def node_ops_port(self, node: str, service: str) -> int:
        if service in DEVICE_SERVICES:
            return self.node_base(node) + DEVICE_SERVICES[service]
        return self.node_base(node) + 2 + EDGE_SERVICES.index(service)

    def edged_ops_port(self, node: str) -> int:
        return self.node_base(node) + EDGED_SLOT

    def edgemesh_ops_port(self, node: str) -> int:
        return self.node_base(node) + EDGEMESH_SLOT

    def mesh_dns_port(self, node: str) -> int:
        """The node's edgemesh DNS server (UDP and TCP) on ``host``."""
        return self.node_base(node) + MESH_DNS_SLOT

    def service_cidr(self, node: str) -> str:
        """The loopback range of the node's Service addresses: all nodes of a lab share one
        loopback, so each gets a /24 of its own, and labs with other base ports other ones
        (``127.(40+i).(base_port/10 mod 256).0/24``; 127.40.140.0/24 for the first node of
        the default lab)."""
        return f"127.{40 + self.nodes.index(node)}.{(self.base_port // 10) % 256}.0/24"

    @property
    def use_containerd(self) -> bool:
        if self.containerd is None:
            return usable() is None
        return self.containerd

    def node_containerd(self, node: str) -> ContainerdConfig:
        return ContainerdConfig(str(self._dir("nodes", node, "containerd")))

    def sim_modbus_port(self, node: str) -> int | None:
        """The simulated Modbus thermostat's port (the first node only)."""
        return self.node_base(node) + SIM_MODBUS_SLOT if self.devices and node == self.nodes[0] else None

    def all_ports(self) -> list[int]:
        ports = [self.cloud_nats_port, self.cloud_leaf_port, self.apiserver_port]
        ports += [self.cloud_ops_port(s) for s in CLOUD_SERVICES if s != "apiserver" and (self.devices or s != "devicecontroller")]
        for n in self.nodes:
            ports += [self.node_nats_port(n), self.node_mqtt_port(n), self.metaserver_port(n)]
            ports += [self.node_ops_port(n, s) for s in EDGE_SERVICES]
            ports += [self.edged_ops_port(n), self.edgemesh_ops_port(n), self.mesh_dns_port(n)]
            if self.devices:
                ports += [self.node_ops_port(n, s) for s in DEVICE_SERVICES]
                sim = self.sim_modbus_port(n)
                ports += [sim] if sim else []
        ports += [self.replica_port(svc, k) for svc, n in self.replicas.items() for k in range(2, n + 1)]
        return ports

    @property
    def internal_ip(self) -> str:
        """The address nodes report as their InternalIP ("" = their resolved hostname)."""
        return self.host

    # -- urls -------------------------------------------------------------------------
    @property
    def cloud_nats_url(self) -> str:
        return f"nats://{self.host}:{self.cloud_nats_port}"

    @property
    def apiserver_url(self) -> str:
        return f"http://{self.host}:{self.apiserver_port}"

    def node_nats_url(self, node: str) -> str:
        return f"nats://{self.host}:{self.node_nats_port(node)}"

    # -- processes ----------------------------------------------------------------------
    def _dir(self, *parts: str) -> Path:
        return Path(self.data_dir, *parts)

    def _service(self, group: str, service: str, settings: dict[str, Any], ops_port: int, ready_url: str | None = None) -> ProcSpec:
        env = to_env({"log": {"level": self.log_level}, "ops": {"host": self.host, "port": ops_port}, **settings})
        return ProcSpec(
            name=f"{group}/{service}",
            group=group,
            argv=[sys.executable, "-m", f"services.{service}"],
            env=env,
            log=str(self._dir("logs", group, f"{service}.log")),
            ready_url=ready_url or f"http://{self.host}:{ops_port}/readyz",
        )

    def cloud_processes(self) -> list[ProcSpec]:
        hub = HubConfig(
            store_dir=str(self._dir("cloud", "nats", "js")),
            port=self.cloud_nats_port,
            leaf_port=self.cloud_leaf_port,
            host=self.host,
        )
        conf = str(self._dir("cloud", "nats", "nats.conf"))
        nats = ProcSpec(
            name="cloud/nats",
            group="cloud",
            argv=[nats_server_binary(), "-c", conf],
            env={},
            log=str(self._dir("logs", "cloud", "nats.log")),
            ready_port=self.cloud_nats_port,
            config_file=conf,
            config_text=hub.render(),
        )
        nats_settings = {"nats": {"url": self.cloud_nats_url}}
        api = self._service(
            "cloud",
            "apiserver",
            {**nats_settings, "apiserver": {"host": self.host, "port": self.apiserver_port}},
            0,
            ready_url=f"{self.apiserver_url}/readyz",
        )
        hubsvc = self._service(
            "cloud",
            "cloudhub",
            {**nats_settings, "cloudhub": {"node_grace_period": self.grace, "bootstrap_tokens": json.dumps([self.token])}},
            self.cloud_ops_port("cloudhub"),
        )
        ctl = self._service("cloud", "edgecontroller", nats_settings, self.cloud_ops_port("edgecontroller"))
        epctl = self._service("cloud", "endpointcontroller", nats_settings, self.cloud_ops_port("endpointcontroller"))
        if not self.devices:
            return [nats, api, hubsvc, ctl, epctl]
        devctl = self._service("cloud", "devicecontroller", nats_settings, self.cloud_ops_port("devicecontroller"))
        return [nats, api, hubsvc, ctl, epctl, devctl]

    def node_processes(self, node: str) -> list[ProcSpec]:
        leaf = LeafConfig(
            name=node,
            domain=names.node_domain(node),
            store_dir=str(self._dir("nodes", node, "nats", "js")),
            port=self.node_nats_port(node),
            hub_urls=[self.leaf_urls.get(node) or f"nats-leaf://{self.host}:{self.cloud_leaf_port}"],
            host=self.host,
            mqtt_port=self.node_mqtt_port(node),
        )
        conf = str(self._dir("nodes", node, "nats", "nats.conf"))
        nats = ProcSpec(
            name=f"{node}/nats",
            group=node,
            argv=[nats_server_binary(), "-c", conf],
            env={},
            log=str(self._dir("logs", node, "nats.log")),
            ready_port=self.node_nats_port(node),
            config_file=conf,
            config_text=leaf.render(),
        )
        base = {"node": node, "nats": {"url": self.node_nats_url(node), "ping_interval": 2}}
        hub = self._service(
            node,
            "edgehub",
            {**base, "edgehub": {"join_token": self.token, "heartbeat_interval": self.heartbeat, "status_interval": self.status_interval, "internal_ip": self.internal_ip}},
            self.node_ops_port(node, "edgehub"),
        )
        mm = self._service(
            node,
            "metamanager",
            {**base, "metamanager": {"data_dir": str(self._dir("nodes", node, "metamanager")), "metaserver_host": self.host, "metaserver_port": self.metaserver_port(node)}},
            self.node_ops_port(node, "metamanager"),
        )
        mesh = self._service(
            node,
            "edgemesh",
            {**base, "edgemesh": {"dns_host": self.host, "dns_port": self.mesh_dns_port(node), "service_cidr": self.service_cidr(node)}},
            self.edgemesh_ops_port(node),
        )
        procs = [nats, *self.runtime_processes(node), mm, hub, self.edged_process(node, base), mesh]
        if not self.devices:
            return procs
        return [*procs, *self.device_processes(node, base)]

    def runtime_processes(self, node: str) -> list[ProcSpec]:
        """The node's private containerd (root, sockets and runc state of its own)."""
        if not self.use_containerd:
            return []
        cfg = self.node_containerd(node)
        return [
            ProcSpec(
                name=f"{node}/containerd",
                group=node,
                argv=[containerd_binary() or "containerd", "--config", str(cfg.config_path)],
                env={},
                log=str(self._dir("logs", node, "containerd.log")),
                ready_socket=cfg.socket,
                config_file=str(cfg.config_path),
                config_text=cfg.render(),
                cri_address=cfg.address,
            )
        ]

    def edged_process(self, node: str, base: dict[str, Any]) -> ProcSpec:
        """edged, with the lab's images preloaded (busybox, and the sandbox image)."""
        cache = {"cache": Path(self.image_cache)} if self.image_cache else {}
        images = [str(archive_path(name, **cache)) for name in (BUSYBOX_IMAGE, PAUSE_IMAGE)]
        return self._service(
            node,
            "edged",
            {
                **base,
                "edged": {
                    "containerd": self.node_containerd(node).address,
                    "data_dir": str(self._dir("nodes", node, "edged")),
                    "internal_ip": self.internal_ip,
                    "status_interval": self.status_interval,
                    "preload_images": json.dumps(images),
                },
            },
            self.edged_ops_port(node),
        )

    def device_processes(self, node: str, base: dict[str, Any]) -> list[ProcSpec]:
        out = []
        sim = self.sim_modbus_port(node)
        if sim:
            out.append(
                ProcSpec(
                    name=f"{node}/modbus-sim",
                    group=node,
                    argv=[sys.executable, "-m", "edgebus.cli.main", "device", "simulate", "modbus", "--host", self.host, "--port", str(sim)],
                    env={},
                    log=str(self._dir("logs", node, "modbus-sim.log")),
                    ready_port=sim,
                )
            )
        out.append(self._service(node, "devicetwin", {**base, "devicetwin": {"data_dir": str(self._dir("nodes", node, "devicetwin"))}}, self.node_ops_port(node, "devicetwin")))
        for mapper in ("mappers.modbus", "mappers.opcua"):
            out.append(self._service(node, mapper, base, self.node_ops_port(node, mapper)))
        return out

    def processes(self) -> list[ProcSpec]:
        out = self.replicated(self.cloud_processes())
        for n in self.nodes:
            out += self.node_processes(n)
        return out

    def replica_port(self, service: str, replica: int, which: int = 0) -> int:
        """Ports of extra replicas (2, 3, ...) of a cloud service: a block from base + 100."""
        return self.base_port + 100 + 10 * (replica - 2) + 2 * sorted(self.replicas).index(service) + which

    def replicated(self, procs: list[ProcSpec]) -> list[ProcSpec]:
        """Cloud services with ``replicas[service] > 1`` run as that many processes
        (``cloud/<service>-2``, ...), each with its own ports, exactly as they scale elsewhere."""
        out = list(procs)
        for spec in procs:
            svc = spec.argv[-1].removeprefix("services.") if "-m" in spec.argv else ""
            for k in range(2, self.replicas.get(svc, 1) + 1):
                env = dict(spec.env)
                ops = self.replica_port(svc, k)
                ready = f"http://{self.host}:{ops}/readyz"
                if env.get("EDGEBUS_APISERVER__PORT"):
                    env["EDGEBUS_APISERVER__PORT"] = str(ops)
                else:
                    env["EDGEBUS_OPS__PORT"] = str(ops)
                out.append(replace(spec, name=f"cloud/{svc}-{k}", env=env, log=spec.log.replace(".log", f"-{k}.log"), ready_url=ready))
        return out
