"""The cloud on a host of its own (``edgebus cloud start``): the lab's cloud processes, no
nodes, on the usual ports of a cloud host, and an address the nodes reach it by.

``address`` is what the cloud advertises: it is in the server certificate, in the leafnode
URL a node gets when it joins, and what the cloud's own processes dial. ``host`` is what
the servers listen on (the address itself by default, ``0.0.0.0`` for every interface). The
services' ops endpoints (readiness, metrics) stay on loopback.

Ports: apiserver 6443 (HTTPS; nodes join through it, operators use it), NATS 4222 (TLS;
admins' NATS clients), leafnodes 7422 (TLS; every node's link), ops endpoints from 10351.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebus.identity.cloud import CloudPki
from edgebus.lab.plan import CLOUD_SERVICES, CLOUD_USERS, WORKLOAD_CONTROLLERS, LabPlan, ProcSpec

NATS, LEAF, API, OPS = 4222, 7422, 6443, 10351
DEFAULT_CLOUD_DIR = Path(os.environ.get("EDGEBUS_CLOUD_DIR", str(Path.home() / ".edgebus" / "cloud")))
WILDCARDS = ("0.0.0.0", "::", "")


@dataclass
class CloudPlan(LabPlan):
    """The cloud of a multi-host install (``nodes`` is empty: nodes join from their hosts)."""

    nodes: list[str] = field(default_factory=list)
    #: the address (IP or DNS name) nodes and clients reach this host by
    address: str = "127.0.0.1"
    #: None: the usual ports above; a number: NATS there, the leafnode port +1, the
    #: apiserver +2, ops endpoints from +3 (several clouds on one host, tests)
    port_base: int | None = None
    #: more names the server certificate carries (a DNS name and an IP, a load balancer)
    extra_hosts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = []
        self.run_cloud = True
        self.containerd = False
        if not self.host:
            self.host = self.address

    def _port(self, usual: int, offset: int) -> int:
        return usual if self.port_base is None else self.port_base + offset

    @property
    def cloud_nats_port(self) -> int:
        return self._port(NATS, 0)

    @property
    def cloud_leaf_port(self) -> int:
        return self._port(LEAF, 1)

    @property
    def apiserver_port(self) -> int:
        return self._port(API, 2)

    def cloud_ops_port(self, service: str) -> int:
        return self._port(OPS, 3) + (*CLOUD_SERVICES, *WORKLOAD_CONTROLLERS).index(service)

    # what the cloud's processes dial, and what it hands out: the advertised address
    @property
    def cloud_nats_url(self) -> str:
        return f"nats://{self.address}:{self.cloud_nats_port}"

    def api_url(self, port: int | None = None) -> str:
        return f"{'https' if self.secure and self.tls else 'http'}://{self.address}:{port or self.apiserver_port}"

    @property
    def advertised_leaf_urls(self) -> list[str]:
        return [f"nats-leaf://{self.address}:{self.cloud_leaf_port}"]

    def cloud_pki(self) -> CloudPki:
        hosts = {self.address, self.host, *self.extra_hosts, "127.0.0.1", "localhost"} - set(WILDCARDS)
        return CloudPki.ensure(self.cloud_pki_dir, hosts=sorted(hosts), users=CLOUD_USERS)

    def _service(self, group: str, service: str, settings: dict[str, Any], ops_port: int, ready_url: str | None = None, *, on_demand: bool = False) -> ProcSpec:
        spec = super()._service(group, service, settings, ops_port, ready_url, on_demand=on_demand)
        if spec.env.get("EDGEBUS_OPS__HOST"):  # readiness and metrics: this host only
            spec.env["EDGEBUS_OPS__HOST"] = "127.0.0.1"
            if ready_url is None:
                spec.ready_url = f"http://127.0.0.1:{ops_port}/readyz"
        return spec
