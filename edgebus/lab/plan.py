"""The lab's plan: every process of a cloud and N edge nodes on one machine - its command,
its ``EDGEBUS_*`` settings, its ports (a block per node), data dir and log file.

The docker-compose file and the Kubernetes manifests are rendered from this same plan
(:mod:`edgebus.deploy`), so they run exactly what ``edgebus up`` runs.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgebus import names
from edgebus.allinone.ondemand import OPTIONAL as ON_DEMAND
from edgebus.allinone.settings import member_env
from edgebus.bus import Bus, BusAuth
from edgebus.cri.containerd import ContainerdConfig, containerd_binary, usable
from edgebus.auth.pki import admin_token, ensure_signing_key
from edgebus.auth.tokens import write_secret
from edgebus.identity.cloud import CloudPki
from edgebus.identity.node import NodeIdentity
from edgebus.images import BUSYBOX_IMAGE, PAUSE_IMAGE, archive_path
from edgebus.natsd import CLUSTER_RESOLVER_SYNC, HubConfig, LeafConfig, nats_server_binary
from edgebus.runtime.settings import to_env

DEFAULT_DIR = Path(os.environ.get("EDGEBUS_LAB_DIR", str(Path.home() / ".edgebus" / "lab")))
DEFAULT_BASE_PORT = 14200
#: client pings of the edge services to their node's own server. A server that ends closes
#: its connections (noticed at once, without a ping); pings only find a server that hangs,
#: so they need not wake an idle node every other second.
LOCAL_PING_INTERVAL = 20
#: the metaserver's port in each node's 10-port block
METASERVER_SLOT = 9
CLOUD_SERVICES = ("apiserver", "cloudhub", "edgecontroller", "devicecontroller", "endpointcontroller", "scheduler")
#: The workload controllers (cloud), each its own process. Their ops ports are the 10-port
#: block right after the last node's (``base + 10 + NODE_BLOCK·N``): the cloud's own block
#: (``base .. base + 9``) is full.
WORKLOAD_CONTROLLERS = (
    "deploymentcontroller",
    "replicasetcontroller",
    "daemonsetcontroller",
    "statefulsetcontroller",
    "jobcontroller",
    "cronjobcontroller",
    "garbagecollector",
    "nodegroupcontroller",
    "edgeapplicationcontroller",
)
#: every cloud user the cloud's PKI issues a credential for: each service's own, and the admin
CLOUD_USERS = (*CLOUD_SERVICES, *WORKLOAD_CONTROLLERS, "admin")
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
    #: started only while the node needs it (a mapper, edgemesh: see edgebus.allinone.ondemand)
    on_demand: bool = False

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
    #: per node, the hub leafnode URL(s, comma-separated) it dials when not the hub's own (a NAT, a proxy)
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
    #: every edge service of a node in one process (``python -m edgebus.allinone``)
    all_in_one: bool = False
    #: seconds an on-demand service (a mapper, edgemesh) keeps running once not needed
    on_demand_linger: float = 60.0
    #: the node servers' JetStream limits and the Go runtime's soft memory limit
    nats_max_memory_store: str = "32M"
    nats_max_file_store: str = "2G"
    nats_gomemlimit: str | None = "48MiB"
    #: pods' resolv.conf names the node's edgemesh DNS: each node's DNS on port 53 of an
    #: address of its own loopback range (None: when port 53 can be bound, i.e. as root or
    #: with ``net.ipv4.ip_unprivileged_port_start`` <= 53; otherwise each node's DNS is on a
    #: port of its block and pods get the host's resolv.conf)
    pod_dns: bool | None = None
    #: nats-servers of the cloud: 1, or a cluster (3: JetStream R3 for every cloud stream
    #: and bucket; services and nodes are given every server's URL and fail over)
    cloud_servers: int = 1

    # -- identity -----------------------------------------------------------------------
    @property
    def cloud_pki_dir(self) -> Path:
        return self._dir("cloud", "pki")

    def cloud_pki(self) -> CloudPki:
        """The cloud's trust material, made on first use (see :mod:`edgebus.identity.cloud`)."""
        users = CLOUD_USERS
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
        url = ",".join(self.cloud_nats_urls)
        if not self.secure:
            return {"url": url}
        p = CloudPki(self.cloud_pki_dir)
        return {"url": url, "creds_file": str(p.creds_file(user)), "ca_file": str(p.ca_file) if self.tls else None}

    @property
    def stream_replicas(self) -> int:
        """Replicas of the cloud's streams and buckets: 3 on a cluster of 3 or more."""
        return min(self.cloud_servers, 3)

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
        return Bus(n["url"].split(","), name=name, request_timeout=request_timeout, auth=BusAuth(creds_file=n.get("creds_file"), ca_file=n.get("ca_file")))

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
    #: run the workload controllers (Deployments, DaemonSets, StatefulSets, Jobs, ...)
    workloads: bool = True

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
        if service in WORKLOAD_CONTROLLERS:
            return self.base_port + 10 + NODE_BLOCK * len(self.nodes) + WORKLOAD_CONTROLLERS.index(service)
        return self.base_port + 3 + CLOUD_SERVICES.index(service)

    def node_base(self, node: str) -> int:
        """Node *i* (0-based) has the ports ``base + 10 + NODE_BLOCK·i`` and on (the cloud
        has ``base .. base + 9``)."""
        return self.base_port + 10 + NODE_BLOCK * self.nodes.index(node)

    def node_nats_port(self, node: str) -> int:
        return self.node_base(node)

    def node_mqtt_port(self, node: str) -> int:
        return self.node_base(node) + 1

    def dmi_socket(self, node: str) -> str:
        """The node's DMI socket (devicetwin's ``DeviceManagerService``), for DMI mappers."""
        return str(self._dir("nodes", node, "devicetwin", "dmi.sock"))

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

    @property
    def pod_dns_on(self) -> bool:
        return self.pod_dns if self.pod_dns is not None else can_bind_port_53()

    def mesh_dns(self, node: str) -> tuple[str, int]:
        """Where the node's edgemesh DNS listens: with pod DNS, port 53 on the 53rd address
        of the node's service range (``127.40.140.53`` for edge-1 of the default lab; the
        nameserver of its pods' resolv.conf), else ``host`` and the node's DNS port."""
        if self.pod_dns_on:
            return node_dns_address(self.service_cidr(node)), 53
        return self.host, self.mesh_dns_port(node)

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
            ports += [self.cloud_ops_port(s) for s in WORKLOAD_CONTROLLERS] if self.workloads else []
            if self.cloud_servers > 1:
                ports += [p for k in range(self.cloud_servers) for p in (self.server_ports(k) if k else self.server_ports(k)[2:])]
        for n in self.nodes:
            ports += [self.node_nats_port(n), self.node_mqtt_port(n), self.metaserver_port(n)]
            ports += [self.node_ops_port(n, s) for s in EDGE_SERVICES]
            ports += [self.edged_ops_port(n), self.edgemesh_ops_port(n)] + ([] if self.pod_dns_on else [self.mesh_dns_port(n)])
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
        """The first cloud server's URL (see :attr:`cloud_nats_urls` for all of them)."""
        return f"nats://{self.host}:{self.cloud_nats_port}"

    @property
    def cloud_nats_urls(self) -> list[str]:
        """Every cloud server's client URL (a connection fails over between them)."""
        first = self.cloud_nats_url
        return [first, *(f"nats://{self.host}:{self.server_ports(k)[0]}" for k in range(1, self.cloud_servers))]

    def server_ports(self, k: int) -> tuple[int, int, int]:
        """Cloud server *k*'s (0-based) client, leafnode and route ports: the first server
        keeps the cloud's usual client and leafnode ports; a cluster's other ports are a
        block after the workload controllers' (``base + 20 + NODE_BLOCK·N``)."""
        block = self.base_port + 20 + NODE_BLOCK * len(self.nodes) + 3 * k
        if k == 0:
            return self.cloud_nats_port, self.cloud_leaf_port, block + 2
        return block, block + 1, block + 2

    def cloud_leaf_ports(self) -> list[int]:
        return [self.server_ports(k)[1] for k in range(self.cloud_servers)]

    @property
    def apiserver_url(self) -> str:
        return self.api_url()

    @property
    def console_url(self) -> str:
        """The web console, served by the apiserver under ``/console``."""
        return f"{self.apiserver_url}/console/"

    def node_nats_url(self, node: str) -> str:
        return f"nats://{self.host}:{self.node_nats_port(node)}"

    @property
    def advertised_leaf_urls(self) -> list[str]:
        """The hub's leafnode URLs cloudhub hands a node when it joins (the address nodes
        dial: the hub's own here, an advertised address on a host of its own)."""
        return [f"nats-leaf://{self.host}:{p}" for p in self.cloud_leaf_ports()]

    # -- processes ----------------------------------------------------------------------
    def _dir(self, *parts: str) -> Path:
        return Path(self.data_dir, *parts)

    def _service(self, group: str, service: str, settings: dict[str, Any], ops_port: int, ready_url: str | None = None, *, on_demand: bool = False) -> ProcSpec:
        env = to_env({"log": {"level": self.log_level}, "ops": {"host": self.host, "port": ops_port}, **settings})
        return ProcSpec(
            name=f"{group}/{service}",
            group=group,
            argv=[sys.executable, "-m", f"services.{service}"],
            env=env,
            log=str(self._dir("logs", group, f"{service}.log")),
            ready_url=ready_url or f"http://{self.host}:{ops_port}/readyz",
            on_demand=on_demand,
        )

    def server_dir(self, k: int = 0) -> Path:
        """Cloud server *k*'s dir (store, resolver, config): ``cloud/nats``, ``cloud/nats-2``..."""
        return self._dir("cloud", "nats" if k == 0 else f"nats-{k + 1}")

    def _render_hub_config(self, k: int) -> str:
        return self.hub_config(k).render()

    def hub_config(self, k: int = 0) -> HubConfig:
        """Cloud server *k*'s configuration; on a cluster each has its own store and full
        resolver (they pass account updates to each other) and routes to the others."""
        auth = None
        d = self.server_dir(k)
        if self.secure:
            auth = CloudPki(self.cloud_pki_dir).hub_auth(str(d / "resolver"), client_tls=self.tls)
            if self.cloud_servers > 1:
                auth.sync_interval = CLUSTER_RESOLVER_SYNC
        port, leaf, route = self.server_ports(k)
        cluster: dict[str, Any] = {}
        if self.cloud_servers > 1:
            peers = [f"nats-route://{self.host}:{self.server_ports(j)[2]}" for j in range(self.cloud_servers) if j != k]
            cluster = {"name": f"cloud-{k + 1}", "cluster_name": "edgebus", "cluster_port": route, "routes": peers}
        return HubConfig(store_dir=str(d / "js"), port=port, leaf_port=leaf, host=self.host, auth=auth, **cluster)

    def cloud_server_processes(self) -> list[ProcSpec]:
        """The cloud's nats-servers: ``cloud/nats`` (and ``cloud/nats-2``, ... on a cluster)."""
        out = []
        for k in range(self.cloud_servers):
            conf = str(self.server_dir(k) / "nats.conf")
            suffix = "" if k == 0 else f"-{k + 1}"
            out.append(
                ProcSpec(
                    name=f"cloud/nats{suffix}",
                    group="cloud",
                    argv=[nats_server_binary(), "-c", conf],
                    env={},
                    log=str(self._dir("logs", "cloud", f"nats{suffix}.log")),
                    ready_port=self.server_ports(k)[0],
                    config_file=conf,
                    render_config=functools.partial(self._render_hub_config, k),
                )
            )
        return out

    def cloud_processes(self) -> list[ProcSpec]:
        servers = self.cloud_server_processes()

        def settings(service: str) -> dict[str, Any]:
            nats = self.cloud_nats_settings(service)
            if self.stream_replicas > 1:
                nats["replicas"] = self.stream_replicas
            return {"nats": nats}

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
                leaf_urls=json.dumps(self.advertised_leaf_urls),
                apiserver_url=self.apiserver_url,
            )
        api = self._service("cloud", "apiserver", {**settings("apiserver"), "apiserver": api_cfg}, 0, ready_url=f"{self.apiserver_url}/readyz")
        hubsvc = self._service("cloud", "cloudhub", {**settings("cloudhub"), "cloudhub": hub_cfg}, self.cloud_ops_port("cloudhub"))
        ctl = self._service("cloud", "edgecontroller", settings("edgecontroller"), self.cloud_ops_port("edgecontroller"))
        epctl = self._service("cloud", "endpointcontroller", settings("endpointcontroller"), self.cloud_ops_port("endpointcontroller"))
        sched = self._service("cloud", "scheduler", settings("scheduler"), self.cloud_ops_port("scheduler"))
        out = [*servers, api, hubsvc, ctl, epctl, sched]
        if self.devices:
            out.append(self._service("cloud", "devicecontroller", settings("devicecontroller"), self.cloud_ops_port("devicecontroller")))
        if self.workloads:
            out += [self._service("cloud", name, settings(name), self.cloud_ops_port(name)) for name in WORKLOAD_CONTROLLERS]
        return out

    def leaf_config(self, node: str) -> LeafConfig:
        """The node's server; its link to the cloud only once the node has joined."""
        ident = self.node_identity(node)
        given = self.leaf_urls.get(node)
        hub_urls = given.split(",") if given else self.advertised_leaf_urls
        auth = ident.leaf_auth(node) if self.secure else None
        if auth is not None:
            auth.tls = self.tls
        return LeafConfig(
            name=node,
            domain=names.node_domain(node),
            store_dir=str(self._dir("nodes", node, "nats", "js")),
            port=self.node_nats_port(node),
            hub_urls=hub_urls if (not self.secure or ident.joined) else [],
            host=self.host,
            mqtt_port=self.node_mqtt_port(node),
            auth=auth,
            max_memory_store=self.nats_max_memory_store,
            max_file_store=self.nats_max_file_store,
        )

    def node_processes(self, node: str) -> list[ProcSpec]:
        conf = str(self._dir("nodes", node, "nats", "nats.conf"))
        nats = ProcSpec(
            name=f"{node}/nats",
            group=node,
            argv=[nats_server_binary(), "-c", conf],
            env=self.nats_env(),
            log=str(self._dir("logs", node, "nats.log")),
            ready_port=self.node_nats_port(node),
            config_file=conf,
            render_config=lambda: self.leaf_config(node).render(),
        )
        services = self.node_services(node)
        sim = self.sim_process(node)
        procs = [nats, *self.runtime_processes(node)]
        if self.all_in_one:
            return [*procs, self.allinone_process(node, services), *([sim] if sim else [])]
        for name, cfg, ops in services:
            if name == "devicetwin" and sim:
                procs.append(sim)  # the device, then what drives it
            procs.append(self._service(node, name, cfg, ops, on_demand=name in ON_DEMAND))
        return procs

    def node_services(self, node: str) -> list[tuple[str, dict[str, Any], int]]:
        """Every edge service of the node: its name, its settings and its ops port, in start
        order (the same whether each is its own process or all share one)."""

        def base(user: str) -> dict[str, Any]:
            return {"node": node, "nats": {**self.node_nats_settings(node, user), "ping_interval": LOCAL_PING_INTERVAL}}

        hub_cfg: dict[str, Any] = {"heartbeat_interval": self.heartbeat, "status_interval": self.status_interval, "internal_ip": self.internal_ip}
        if self.secure:
            ident = self.node_identity(node)
            hub_cfg.update(identity_dir=str(ident.dir), system_nkey_file=str(ident.local_nkey_file("system")))
        mm_cfg: dict[str, Any] = {"data_dir": str(self._dir("nodes", node, "metamanager")), "metaserver_host": self.host, "metaserver_port": self.metaserver_port(node)}
        if self.secure:
            ident = self.node_identity(node)
            mm_cfg.update(
                admin_token_file=str(ident.admin_token_file),
                auth={"token_keys": json.dumps([str(ident.token_keys_file)])},
                metaserver_tls_cert_file=str(ident.metaserver_cert_file),
                metaserver_tls_key_file=str(ident.metaserver_key_file),
            )
        dns_host, dns_port = self.mesh_dns(node)
        mesh_cfg = {"dns_host": dns_host, "dns_port": dns_port, "service_cidr": self.service_cidr(node)}
        out = [
            ("metamanager", {**base("metamanager"), "metamanager": mm_cfg}, self.node_ops_port(node, "metamanager")),
            ("edgehub", {**base("edgehub"), "edgehub": hub_cfg}, self.node_ops_port(node, "edgehub")),
            ("edged", {**base("edged"), "edged": self.edged_settings(node)}, self.edged_ops_port(node)),
            ("edgemesh", {**base("edgemesh"), "edgemesh": mesh_cfg}, self.edgemesh_ops_port(node)),
        ]
        if self.devices:
            out.append(("devicetwin", {**base("devicetwin"), "devicetwin": {"data_dir": str(self._dir("nodes", node, "devicetwin"))}}, self.node_ops_port(node, "devicetwin")))
            for mapper in ("mappers.modbus", "mappers.opcua"):
                out.append((mapper, {"node": node, "nats": self.mapper_nats_settings(node, mapper)}, self.node_ops_port(node, mapper)))
        return out

    def allinone_process(self, node: str, services: list[tuple[str, dict[str, Any], int]]) -> ProcSpec:
        """Every edge service of the node in one process (``python -m edgebus.allinone``): each
        keeps its own settings (credential, data dir, ports) under its own prefix; the
        process has one ops endpoint (edgehub's port) and its own credential, to follow what
        the node needs (the on-demand services)."""
        names_ = [name for name, _, _ in services]
        settings = {
            "node": node,
            "nats": {**self.node_nats_settings(node, "allinone"), "ping_interval": LOCAL_PING_INTERVAL},
            "allinone": {
                "services": json.dumps([n for n in names_ if n not in ON_DEMAND]),
                "on_demand": json.dumps([n for n in names_ if n in ON_DEMAND]),
                "linger": self.on_demand_linger,
            },
        }
        spec = self._service(node, "allinone", settings, self.node_ops_port(node, "edgehub"))
        spec.argv = [sys.executable, "-m", "edgebus.allinone"]
        for name, cfg, _ in services:
            spec.env.update(member_env(name, cfg))
        return spec

    def process_of(self, node: str, service: str) -> str:
        """The name of the lab process that runs a node's service (``edge-1/edged``, or
        ``edge-1/allinone`` when the node runs all in one)."""
        return f"{node}/allinone" if self.all_in_one else f"{node}/{service}"

    def nats_env(self) -> dict[str, str]:
        """A node server's environment: the Go runtime's soft memory limit."""
        return {"GOMEMLIMIT": self.nats_gomemlimit} if self.nats_gomemlimit else {}

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

    def edged_settings(self, node: str) -> dict[str, Any]:
        """edged's group, with the lab's images preloaded (busybox, and the sandbox image)."""
        cache = {"cache": Path(self.image_cache)} if self.image_cache else {}
        images = [str(archive_path(name, **cache)) for name in (BUSYBOX_IMAGE, PAUSE_IMAGE)]
        return {
            "containerd": self.node_containerd(node).address,
            "data_dir": str(self._dir("nodes", node, "edged")),
            "internal_ip": self.internal_ip,
            "status_interval": self.status_interval,
            "preload_images": json.dumps(images),
            **({"cluster_dns": json.dumps([self.mesh_dns(node)[0]])} if self.pod_dns_on else {}),
        }

    def sim_process(self, node: str) -> ProcSpec | None:
        """The simulated Modbus thermostat (the first node of a lab with devices)."""
        sim = self.sim_modbus_port(node)
        if not sim:
            return None
        return ProcSpec(
            name=f"{node}/modbus-sim",
            group=node,
            argv=[sys.executable, "-m", "edgebus.cli.main", "device", "simulate", "modbus", "--host", self.host, "--port", str(sim)],
            env={},
            log=str(self._dir("logs", node, "modbus-sim.log")),
            ready_port=sim,
        )

    def mapper_nats_settings(self, node: str, mapper: str) -> dict[str, Any]:
        """A mapper's own credential: KubeEdge's device topics only."""
        if not self.secure:
            return {"url": self.node_nats_url(node), "ping_interval": LOCAL_PING_INTERVAL}
        cred = self.node_identity(node).mapper(mapper.rsplit(".", 1)[-1])
        return {"url": self.node_nats_url(node), "ping_interval": LOCAL_PING_INTERVAL, "nkey_file": str(cred.nkey_file), "inbox_prefix": names.mapper_inbox_prefix(node)}

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


def node_dns_address(service_cidr: str) -> str:
    """The node's DNS address inside its service range (offset 53; edgemesh gives it to no
    Service)."""
    return str(ipaddress.ip_network(service_cidr, strict=False).network_address + 53)


def can_bind_port_53() -> bool:
    """Whether this process may listen on port 53 (root, or unprivileged ports start at or
    below 53)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read().strip()) <= 53
    except (OSError, ValueError):
        return False
