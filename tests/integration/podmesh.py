"""Pods end to end in one process: a real hub and leaf, a private containerd with the
offline images, and cloudhub, edgecontroller, apiserver (cloud) plus metamanager, edgehub
and edged (edge-1). Used by the edged integration tests and the pod startup benchmark."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgebus import names
from edgebus.bus import Bus, CaughtUp, read_stream
from edgebus.envelope import Envelope
from edgebus.cri import CriClient
from edgebus.cri.containerd import Containerd
from edgebus.testing.containerd import skip_reason, start_containerd, stop_containerd
from edgebus.errors import NotFound
from edgebus.natsd import free_port
from edgebus.objects import NODES, PODS
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service
from edgebus.testing.servers import Cluster, Leaf, cloudhub_identity, register_node, start_leaf
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually

NODE = "edge-1"
BUSYBOX = "docker.io/library/busybox:edgebus"

EDGED_FAST = {
    "sync_interval": 0.5,
    "backoff_initial": 1.0,
    "backoff_max": 8.0,
    "image_backoff_initial": 1.0,
    "default_grace_period": 2,
    "status_interval": 5.0,
}



#: a private containerd for a test module (import it into the module: ``from .podmesh import containerd``)
@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    c = start_containerd(tmp_path_factory.mktemp("ctd"))
    try:
        yield c
    finally:
        stop_containerd(c)


@dataclass
class PodMesh:
    cluster: Cluster
    leaf: Leaf
    containerd: Containerd
    store: ObjectStore
    cloud: Bus
    edge: Bus
    cri: CriClient
    api_url: str
    services: dict[str, Service[Any]]
    tmp: Path
    edged_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def edged_dir(self) -> Path:
        return self.tmp / "edged"

    def edged_kwargs(self) -> dict[str, Any]:
        return {
            "node": NODE,
            "nats": {**self.leaf.nats_settings("edged"), "ping_interval": 1},
            "edged": {"containerd": self.containerd.address, "data_dir": str(self.edged_dir), "internal_ip": "127.0.0.1", **EDGED_FAST, **self.edged_settings},
        }

    async def restart_edged(self) -> None:
        old = self.services.pop("edged", None)
        if old is not None:
            await old.stop()
        svc = build_service("edged", **self.edged_kwargs())
        await svc.start()
        self.services["edged"] = svc

    async def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        try:
            return await self.store.get(PODS, namespace, name)
        except NotFound:
            return None

    async def phase(self, name: str) -> str | None:
        p = await self.pod(name)
        return ((p or {}).get("status") or {}).get("phase")

    async def container_status(self, name: str, container: str | None = None) -> dict[str, Any] | None:
        p = await self.pod(name)
        for s in ((p or {}).get("status") or {}).get("containerStatuses") or []:
            if container is None or s.get("name") == container:
                return dict(s)
        return None

    async def wait_phase(self, name: str, phase: str, timeout: float = 20) -> dict[str, Any]:
        async def ok() -> dict[str, Any] | None:
            p = await self.pod(name)
            return p if ((p or {}).get("status") or {}).get("phase") == phase else None

        return dict(await eventually(ok, timeout=timeout, interval=0.1, msg=f"pod {name} {phase}"))

    async def runtime_pods(self, name: str | None = None) -> tuple[list[Any], list[Any]]:
        labels = {"io.edgebus.node": NODE}
        if name:
            labels["io.kubernetes.pod.name"] = name
        return await self.cri.list_pod_sandbox(labels), await self.cri.list_containers(labels)

    async def reported_statuses(self, name: str) -> list[dict[str, Any]]:
        """Every status of pod ``name`` the node sent to the cloud (EDGEBUS_UP), in order."""
        out: list[dict[str, Any]] = []
        subject = names.up_subject(NODE, names.UP_STATUS, names.ObjectRef("pods", "default", name))
        async with aclosing(read_stream(self.cloud, names.STREAM_UP, subject, stop_when_caught_up=True)) as it:
            async for m in it:
                if isinstance(m, CaughtUp):
                    break
                out.append(Envelope.decode(m.data).content.get("status") or {})
        return out

    async def waiting_reasons(self, name: str) -> list[str]:
        reasons = []
        for st in await self.reported_statuses(name):
            for cs in st.get("containerStatuses") or []:
                r = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
                if r and (not reasons or reasons[-1] != r):
                    reasons.append(r)
        return reasons

    async def delete_pod(self, name: str, *, force: bool = True) -> None:
        try:
            await self.store.delete(PODS, "default", name, grace_period_seconds=0 if force else None)
        except NotFound:
            pass


def pod(name: str, *, command: list[str] | None = None, restart: str = "Always", image: str = BUSYBOX, grace: int = 1, **container: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": container.pop("container_name", "main"), "image": image, "imagePullPolicy": container.pop("pull", "IfNotPresent")}
    if command is not None:
        c["command"] = command
    c.update(container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "restartPolicy": restart, "terminationGracePeriodSeconds": grace, "containers": [c]},
    }


async def start_mesh(cluster: Cluster, tmp: Path, containerd: Containerd, *, wait_runtime: bool = True, **edged: Any) -> PodMesh:
    """``wait_runtime=False``: a node without containerd (Wasm pods only), ready once Ready."""
    leaf = start_leaf(tmp, cluster.hub, NODE)
    cluster.leaves[NODE] = leaf
    hub = cluster.hub
    api_port = free_port()
    services: dict[str, Service[Any]] = {
        "cloudhub": build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub=cloudhub_identity(hub, node_grace_period=10)),
        "edgecontroller": build_service("edgecontroller", nats=hub.nats_settings("edgecontroller")),
        "apiserver": build_service("apiserver", nats=hub.nats_settings("apiserver"), apiserver={"port": api_port}),
        "metamanager": build_service("metamanager", node=NODE, nats={**leaf.nats_settings("metamanager"), "ping_interval": 1}, metamanager={"data_dir": str(tmp / "mm"), "metaserver_port": free_port()}),
        "edgehub": build_service("edgehub", node=NODE, nats={**leaf.nats_settings("edgehub"), "ping_interval": 1}, edgehub={"heartbeat_interval": 1, "internal_ip": "127.0.0.1"}),
    }
    cloud = hub.bus("test-cloud")
    await cloud.connect(retry_for=10)
    edge = leaf.bus("test-edge")
    await edge.connect(retry_for=10)
    store = ObjectStore(cloud)
    await store.ensure()
    await store.ensure_system_namespaces()
    await register_node(store, NODE)
    for s in services.values():
        await s.start()
    mesh = PodMesh(cluster, leaf, containerd, store, cloud, edge, CriClient(containerd.address), f"http://127.0.0.1:{api_port}", services, tmp, edged)
    await mesh.restart_edged()

    async def ready() -> bool:
        try:
            n = await store.get(NODES, None, NODE)
        except NotFound:
            return False
        conds = {c["type"]: c["status"] for c in (n.get("status") or {}).get("conditions") or []}
        return conds.get("Ready") == "True" and (conds.get("ContainerRuntimeReady") == "True" or not wait_runtime and "ContainerRuntimeReady" in conds)

    await eventually(ready, timeout=30, msg="edge-1 Ready with its runtime")
    async with httpx.AsyncClient(base_url=mesh.api_url) as c:
        await eventually(lambda: _ok(c), timeout=10, msg="apiserver ready")
    return mesh


async def _ok(c: httpx.AsyncClient) -> bool:
    return (await c.get("/readyz")).status_code == 200


async def stop_mesh(mesh: PodMesh) -> None:
    t0 = time.monotonic()
    for name in ("edged", "edgehub", "metamanager", "apiserver", "edgecontroller", "cloudhub"):
        s = mesh.services.get(name)
        if s is not None:
            await s.stop()
    await mesh.cri.close()
    for b in (mesh.cloud, mesh.edge):
        await b.close()
    _ = t0
