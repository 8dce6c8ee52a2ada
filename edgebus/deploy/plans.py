"""The lab's plan, addressed for containers.

``edgebus up`` runs every process on one host, so each gets its own loopback port. In
docker compose every process is its own host (a service name), and in Kubernetes every
cloud service is a Deployment behind a Service: the same processes, commands and settings,
only the addresses, ports and data paths change. :class:`ContainerPlan` is the
:class:`~edgebus.lab.LabPlan` with exactly those changes, so compose and the manifests are
rendered from what the lab runs and cannot drift from it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from edgebus import names
from edgebus.identity.cloud import CloudPki
from edgebus.lab import CLOUD_SERVICES, CLOUD_USERS, WORKLOAD_CONTROLLERS, LabPlan, ProcSpec
from edgebus.natsd import nats_server_binary

#: Ports inside a container (each process has the whole port space to itself).
NATS, LEAF, MQTT, API, OPS, METASERVER, MODBUS, MONITOR = 4222, 7422, 1883, 8080, 9090, 10550, 5020, 8222

#: The image every container runs (built from the repository's Dockerfile).
IMAGE = "edgebus:dev"
#: Where the Dockerfile builds the lab's OCI image archives (busybox, pause).
IMAGE_CACHE = "/opt/edgebus/images"


def service_name(proc_name: str) -> str:
    """``cloud/apiserver`` -> ``cloud-apiserver``; ``edge-1/mappers.modbus`` -> ``edge-1-mappers-modbus``."""
    return proc_name.replace("/", "-").replace(".", "-")


class RenderOnly(LabPlan):
    """A plan rendered, not run here: naming a mapper's credential does not make it (it is
    made where the node runs, see :mod:`edgebus.deploy.boot`)."""

    def mapper_nats_settings(self, node: str, mapper: str) -> dict[str, Any]:
        if not self.secure:
            return super().mapper_nats_settings(node, mapper)
        ident = self.node_identity(node)
        m = mapper.rsplit(".", 1)[-1]
        return {"url": self.node_nats_url(node), "ping_interval": 2, "nkey_file": str(ident.local_nkey_file(f"mapper-{m}")), "inbox_prefix": names.mapper_inbox_prefix(node)}


@dataclass
class RenderedLabPlan(RenderOnly):
    """The lab's plan, to compare the renderings with."""

    #: renderings do not depend on who renders them (pods keep the host's resolv.conf)
    pod_dns: bool | None = False


@dataclass
class ContainerPlan(RenderOnly):
    """Every process is its own host: fixed ports, service names as addresses, data in /data."""

    #: renderings do not depend on who renders them (pods keep the host's resolv.conf)
    pod_dns: bool | None = False

    def __post_init__(self) -> None:
        self.host = "0.0.0.0"
        self.leaf_urls = {n: self.leaf_urls_for_nodes for n in self.nodes}

    # ports inside the container
    @property
    def cloud_nats_port(self) -> int:
        return NATS

    @property
    def cloud_leaf_port(self) -> int:
        return LEAF

    @property
    def apiserver_port(self) -> int:
        return API

    def cloud_ops_port(self, service: str) -> int:
        return OPS

    def node_nats_port(self, node: str) -> int:
        return NATS

    def node_mqtt_port(self, node: str) -> int:
        return MQTT

    def metaserver_port(self, node: str) -> int:
        return METASERVER

    def node_ops_port(self, node: str, service: str) -> int:
        return OPS

    def edged_ops_port(self, node: str) -> int:
        return OPS

    def edgemesh_ops_port(self, node: str) -> int:
        return OPS

    def mesh_dns_port(self, node: str) -> int:
        return 53

    def sim_modbus_port(self, node: str) -> int | None:
        return MODBUS if self.devices and node == self.nodes[0] else None

    # addresses other processes use
    @property
    def cloud_nats_url(self) -> str:
        return f"nats://{service_name('cloud/nats')}:{NATS}"

    def api_url(self, port: int | None = None) -> str:
        return f"{'https' if self.secure and self.tls else 'http'}://{service_name('cloud/apiserver')}:{port or API}"

    @property
    def advertised_leaf_urls(self) -> list[str]:
        return [self.leaf_urls_for_nodes]

    @property
    def leaf_urls_for_nodes(self) -> str:
        return f"nats-leaf://{service_name('cloud/nats')}:{LEAF}"

    def cloud_pki(self) -> CloudPki:
        """The server certificate names the services' hosts (containers dial them by name)
        and loopback (the host reaches the published ports there)."""
        hosts = [service_name("cloud/nats"), service_name("cloud/apiserver"), "127.0.0.1", "localhost"]
        return CloudPki.ensure(self.cloud_pki_dir, hosts=hosts, users=CLOUD_USERS)

    def node_nats_url(self, node: str) -> str:
        return f"nats://{service_name(f'{node}/nats')}:{NATS}"

    @property
    def use_containerd(self) -> bool:
        return True

    @property
    def internal_ip(self) -> str:
        return ""  # the container's own address (its resolved hostname)



#: where :func:`lab_plan` pretends the lab's data is (nothing is written there)
LAB_DIR = "/var/lib/edgebus-lab"


def lab_plan(nodes: int = 2, *, secure: bool = False, **kw: Any) -> LabPlan:
    """The plan ``edgebus up --nodes N`` runs (the data dir is a placeholder). Compose and the
    Kubernetes manifests run it secure, as the lab does, and are compared in that mode."""
    return RenderedLabPlan(data_dir=LAB_DIR, nodes=[f"edge-{i}" for i in range(1, nodes + 1)], containerd=True, secure=secure, **kw)


def container_plan(nodes: int = 2, *, secure: bool = False, **kw: Any) -> ContainerPlan:
    return ContainerPlan(
        data_dir="/data", nodes=[f"edge-{i}" for i in range(1, nodes + 1)], containerd=True, image_cache=IMAGE_CACHE, secure=secure, **kw
    )


def portable_argv(spec: ProcSpec) -> list[str]:
    """The command with this machine's interpreter and binaries replaced by the image's."""
    out = []
    for a in spec.argv:
        if a == sys.executable:
            out.append("python")
        elif a == nats_server_binary():
            out.append("nats-server")
        elif a.endswith("/containerd") or a == "containerd":
            out.append("containerd")
        else:
            out.append(a)
    return out


def module_of(spec: ProcSpec) -> str | None:
    """``services.apiserver`` for ``python -m services.apiserver``."""
    argv = spec.argv
    return argv[argv.index("-m") + 1] if "-m" in argv else None


def is_cloud_service(spec: ProcSpec) -> bool:
    return spec.group == "cloud" and (module_of(spec) or "").removeprefix("services.") in (*CLOUD_SERVICES, *WORKLOAD_CONTROLLERS)
