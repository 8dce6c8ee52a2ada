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

from collections.abc import Callable

from edgebus import names
from edgebus.bus import Bus, BusAuth
from edgebus.cri.containerd import ContainerdConfig, containerd_binary, usable
from edgebus.auth.pki import admin_token, ensure_signing_key
from edgebus.auth.tokens import write_secret
from edgebus.identity.cloud import CloudPki
from edgebus.identity.node import NodeIdentity
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
    #: renders the config file at each start instead (it depends on files made at run time,
    #: e.g. a node's credential after it joined)
    render_config: Callable[[], str] | None = None

    def config(self) -> str | None:
        return self.render_config() if self.render_config is not None else self.config_text


@dataclass
class LabPlan:
    data_dir: str
    nodes: list[str]
    base_port: int = DEFAULT_BASE_PORT
    host: str = "127.0.0.1"
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
    #: credentials on every connection, TLS on the cloud's ports, nodes that join with a token
    secure: bool = True
    #: TLS on the cloud's NATS ports and the apiserver (off only to measure what it costs)
    tls: bool = True
    #: lifetime of the nodes' link certificates (cloudhub renews them at two thirds)
    link_lifetime: float = 30 * 86400.0
    #: run the cloud too (False: only the nodes, which dial a cloud elsewhere)
    run_cloud: bool = True

    # -- identity -----------------------------------------------------------------------
    @property
    def cloud_pki_dir(self) -> Path:
        return self._dir("cloud", "pki")

    def cloud_pki(self) -> CloudPki:
        """The cloud's trust material, made on first use (see :mod:`edgebus.identity.cloud`)."""
        users = (*CLOUD_SERVICES, "admin")
        return CloudPki.ensure(self.cloud_pki_dir, hosts=sorted({self.host, "127.0.0.1", "localhost"} - {"0.0.0.0"}), users=users)

    def node_identity(self, node: str) -> NodeIdentity:
        return NodeIdentity(self._dir("nodes", node, "identity"))

    def prepare(self) -> None:
        """Make what the processes' configurations name: the cloud's PKI, each node's local
        credentials (a node's own credential comes later, when it joins)."""
        if not self.secure:
            return
        for n in self.nodes:
            self.node_identity(n).ensure_local()
        if not self.run_cloud:
            return
        p = self.cloud_pki()
        signing = ensure_signing_key(p.token_signing_key.parent)
        token = self._dir("cloud", "pki", "admin.token")
        if not token.exists():
            write_secret(token, admin_token(signing.private).encode())

    def cloud_nats_settings(self, user: str) -> dict[str, Any]:
        if not self.secure:
            return {"url": self.cloud_nats_url}
        p = CloudPki(self.cloud_pki_dir)
        return {"url": self.cloud_nats_url, "creds_file": str(p.creds_file(user)), "ca_file": str(p.ca_file) if self.tls else None}

    @property
    def tls_ca_file(self) -> str | None:
        """The CA to verify the cloud's TLS with (None when it serves none)."""
        return self.ca_file if self.tls else None

    def node_nats_settings(self, node: str, user: str) -> dict[str, Any]:
        if not self.secure:
            return {"url": self.node_nats_url(node)}
        return {"url": self.node_nats_url(node), "nkey_file": str(self.node_identity(node).local_nkey_file(user))}

    def cloud_bus(self, name: str, *, user: str = "admin", request_timeout: float = 5.0) -> Bus:
        """A connection to the cloud's server (as an admin by default)."""
        n = self.cloud_nats_settings(user)
        return Bus(n["url"], name=name, request_timeout=request_timeout, auth=BusAuth(creds_file=n.get("creds_file"), ca_file=n.get("ca_file")))

    def node_bus(self, node: str, name: str, *, user: str = "edgebus", request_timeout: float = 5.0) -> Bus:
        """A connection to a node's own server (as one of its local users)."""
        n = self.node_nats_settings(node, user)
        return Bus(n["url"], name=name, request_timeout=request_timeout, auth=BusAuth(nkey_file=n.get("nkey_file")), node=node)

    def api_url(self, port: int | None = None) -> str:
        """The apiserver's URL (or a replica's, on ``port``)."""
        return f"{'https' if self.secure and self.tls else 'http'}://{self.host}:{port or self.apiserver_port}"

    def http_kwargs(self) -> dict[str, Any]:
        """httpx client arguments to call the API as the lab's admin (CA and bearer token)."""
        import ssl

        out: dict[str, Any] = {}
        if self.secure and self.tls:
            out["verify"] = ssl.create_default_context(cafile=self.ca_file)
        token = self.admin_token()
        if token:
            out["headers"] = {"Authorization": f"Bearer {token}"}
        return out

    def admin_token(self) -> str | None:
        """The API bearer token of the lab's admin."""
        f = self._dir("cloud", "pki", "admin.token")
        return f.read_text().strip() if f.exists() else None

    @property
    def ca_file(self) -> str | None:
        return str(CloudPki(self.cloud_pki_dir).ca_file) if self.secure else None

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
        ports: list[int] = []
        if self.run_cloud:
            ports += [self.cloud_nats_port, self.cloud_leaf_port, self.apiserver_port]
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
        return self.api_url()

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

    def hub_config(self) -> HubConfig:
        auth = None
        if self.secure:
            auth = CloudPki(self.cloud_pki_dir).hub_auth(str(self._dir("cloud", "nats", "resolver")), client_tls=self.tls)
        return HubConfig(
            store_dir=str(self._dir("cloud", "nats", "js")),
            port=self.cloud_nats_port,
            leaf_port=self.cloud_leaf_port,
            host=self.host,
            auth=auth,
        )

    def cloud_processes(self) -> list[ProcSpec]:
        conf = str(self._dir("cloud", "nats", "nats.conf"))
        nats = ProcSpec(
            name="cloud/nats",
            group="cloud",
            argv=[nats_server_binary(), "-c", conf],
            env={},
            log=str(self._dir("logs", "cloud", "nats.log")),
            ready_port=self.cloud_nats_port,
            config_file=conf,
            render_config=lambda: self.hub_config().render(),
        )

        def settings(service: str) -> dict[str, Any]:
            return {"nats": self.cloud_nats_settings(service)}

        api_cfg: dict[str, Any] = {"host": self.host, "port": self.apiserver_port}
        if self.secure:
            p = CloudPki(self.cloud_pki_dir)
            api_cfg.update(auth={"token_keys": json.dumps([str(p.token_verify_keys)])}, signing_key=str(p.token_signing_key))
        hub_cfg: dict[str, Any] = {"node_grace_period": self.grace, "auto_register_nodes": not self.secure}
        if self.secure:
            p = CloudPki(self.cloud_pki_dir)
            api_cfg.update(ca_file=str(p.ca_file))
            if self.tls:
                api_cfg.update(tls_cert_file=str(p.server_cert_file), tls_key_file=str(p.server_key_file))
            hub_cfg.update(
                pki_dir=str(self.cloud_pki_dir),
                system_creds_file=str(p.sys_creds_file),
                link_lifetime=self.link_lifetime,
                leaf_urls=json.dumps([f"nats-leaf://{self.host}:{self.cloud_leaf_port}"]),
                apiserver_url=self.apiserver_url,
            )
        api = self._service("cloud", "apiserver", {**settings("apiserver"), "apiserver": api_cfg}, 0, ready_url=f"{self.apiserver_url}/readyz")
        hubsvc = self._service("cloud", "cloudhub", {**settings("cloudhub"), "cloudhub": hub_cfg}, self.cloud_ops_port("cloudhub"))
        ctl = self._service("cloud", "edgecontroller", settings("edgecontroller"), self.cloud_ops_port("edgecontroller"))
        epctl = self._service("cloud", "endpointcontroller", settings("endpointcontroller"), self.cloud_ops_port("endpointcontroller"))
        if not self.devices:
            return [nats, api, hubsvc, ctl, epctl]
        devctl = self._service("cloud", "devicecontroller", settings("devicecontroller"), self.cloud_ops_port("devicecontroller"))
        return [nats, api, hubsvc, ctl, epctl, devctl]

    def leaf_config(self, node: str) -> LeafConfig:
        """The node's server; its link to the cloud only once the node has joined."""
        ident = self.node_identity(node)
        hub_url = self.leaf_urls.get(node) or f"nats-leaf://{self.host}:{self.cloud_leaf_port}"
        auth = ident.leaf_auth(node) if self.secure else None
        if auth is not None:
            auth.tls = self.tls
        return LeafConfig(
            name=node,
            domain=names.node_domain(node),
            store_dir=str(self._dir("nodes", node, "nats", "js")),
            port=self.node_nats_port(node),
            hub_urls=[hub_url] if (not self.secure or ident.joined) else [],
            host=self.host,
            mqtt_port=self.node_mqtt_port(node),
            auth=auth,
        )

    def node_processes(self, node: str) -> list[ProcSpec]:
        conf = str(self._dir("nodes", node, "nats", "nats.conf"))
        nats = ProcSpec(
            name=f"{node}/nats",
            group=node,
            argv=[nats_server_binary(), "-c", conf],
            env={},
            log=str(self._dir("logs", node, "nats.log")),
            ready_port=self.node_nats_port(node),
            config_file=conf,
            render_config=lambda: self.leaf_config(node).render(),
        )

        def base(user: str) -> dict[str, Any]:
            return {"node": node, "nats": {**self.node_nats_settings(node, user), "ping_interval": 2}}

        hub_cfg: dict[str, Any] = {"heartbeat_interval": self.heartbeat, "status_interval": self.status_interval, "internal_ip": self.internal_ip}
        if self.secure:
            ident = self.node_identity(node)
            hub_cfg.update(identity_dir=str(ident.dir), system_nkey_file=str(ident.local_nkey_file("system")))
        hub = self._service(node, "edgehub", {**base("edgehub"), "edgehub": hub_cfg}, self.node_ops_port(node, "edgehub"))
        mm_cfg: dict[str, Any] = {"data_dir": str(self._dir("nodes", node, "metamanager")), "metaserver_host": self.host, "metaserver_port": self.metaserver_port(node)}
        if self.secure:
            ident = self.node_identity(node)
            mm_cfg.update(
                admin_token_file=str(ident.admin_token_file),
                auth={"token_keys": json.dumps([str(ident.token_keys_file)])},
                metaserver_tls_cert_file=str(ident.metaserver_cert_file),
                metaserver_tls_key_file=str(ident.metaserver_key_file),
            )
        mm = self._service(node, "metamanager", {**base("metamanager"), "metamanager": mm_cfg}, self.node_ops_port(node, "metamanager"))
        mesh = self._service(
            node,
            "edgemesh",
            {**base("edgemesh"), "edgemesh": {"dns_host": self.host, "dns_port": self.mesh_dns_port(node), "service_cidr": self.service_cidr(node)}},
            self.edgemesh_ops_port(node),
        )
        procs = [nats, *self.runtime_processes(node), mm, hub, self.edged_process(node, base("edged")), mesh]
        if not self.devices:
            return procs
        return [*procs, *self.device_processes(node, base("devicetwin"))]

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
            out.append(self._service(node, mapper, {**base, "nats": self.mapper_nats_settings(node, mapper)}, self.node_ops_port(node, mapper)))
        return out

    def mapper_nats_settings(self, node: str, mapper: str) -> dict[str, Any]:
        """A mapper's own credential: KubeEdge's device topics only."""
        if not self.secure:
            return {"url": self.node_nats_url(node), "ping_interval": 2}
        cred = self.node_identity(node).mapper(mapper.rsplit(".", 1)[-1])
        return {"url": self.node_nats_url(node), "ping_interval": 2, "nkey_file": str(cred.nkey_file), "inbox_prefix": names.mapper_inbox_prefix(node)}

    def processes(self) -> list[ProcSpec]:
        out = self.replicated(self.cloud_processes()) if self.run_cloud else []
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
                    ready = f"{self.api_url(ops)}/readyz"
                else:
                    env["EDGEBUS_OPS__PORT"] = str(ops)
                out.append(replace(spec, name=f"cloud/{svc}-{k}", env=env, log=spec.log.replace(".log", f"-{k}.log"), ready_url=ready))
        return out
