"""An idle edge node does no periodic work it does not need, and reacts as fast as before.

edged against its own real containerd (this module stops and restarts it), real NATS servers
and the cloud services in-process; the all-in-one process's children watched by their pidfd.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import REGISTRY

from edgebus.allinone.children import Child, Children, exited
from edgebus.cri.containerd import Containerd
from edgebus.objects import NODES, PODS
from edgebus.testing.servers import Cluster, start_hub
from edgebus.testing.waiting import eventually

from .podmesh import NODE, PodMesh, containerd, pod, start_mesh, stop_mesh  # noqa: F401 - containerd: the fixture

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: edged's own defaults for what an idle node does (the mesh's fast test settings otherwise)
IDLE = {"sync_interval": 1.0, "idle_sync_interval": 30.0, "runtime_check_interval": 30.0}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(containerd: Containerd, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PodMesh]:  # noqa: F811 - the fixture
    root = tmp_path_factory.mktemp("mesh")
    cluster = Cluster(root, start_hub(root))
    try:
        m = await start_mesh(cluster, root, containerd)
        m.edged_settings.update(IDLE)
        await m.restart_edged()
        try:
            yield m
        finally:
            await stop_mesh(m)
    finally:
        cluster.stop()


def cri_calls() -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "edgebus_cri_seconds":
            for s in metric.samples:
                if s.name.endswith("_count"):
                    out[s.labels["method"]] = s.value
    return out


async def runtime_condition(mesh: PodMesh) -> str:
    n = await mesh.store.get(NODES, None, NODE)
    return str(next(c for c in n["status"]["conditions"] if c["type"] == "ContainerRuntimeReady")["status"])


async def test_an_idle_edged_makes_no_cri_calls(mesh: PodMesh) -> None:
    """No pod: no relist of the runtime every second, no version check every two."""
    await eventually(lambda: runtime_condition(mesh), timeout=20, msg="runtime condition reported")
    await asyncio.sleep(1.5)  # the first listing's relist is behind us
    before = cri_calls()
    await asyncio.sleep(6)
    after = cri_calls()
    made = {m: after[m] - before.get(m, 0) for m in after if after[m] != before.get(m, 0)}
    assert made == {}, f"an idle node called its runtime: {made}"


async def test_a_pod_on_an_idle_node_is_watched_at_once(mesh: PodMesh) -> None:
    """The first pod starts the fast relist: its exit is noticed within seconds, not at the
    idle sweep (30 s)."""
    await mesh.store.create(PODS, pod("short", command=["sh", "-c", "sleep 2; exit 3"], restart="Never"))
    t0 = time.monotonic()
    await mesh.wait_phase("short", "Failed", timeout=20)
    assert time.monotonic() - t0 < 20
    st = await mesh.container_status("short")
    assert st is not None and st["state"]["terminated"]["exitCode"] == 3
    await mesh.delete_pod("short")

    async def empty() -> bool:
        boxes, cs = await mesh.runtime_pods("short")
        return not boxes and not cs

    await eventually(empty, timeout=20, msg="pod short gone from containerd")


async def test_runtime_loss_and_return_are_noticed_at_once(mesh: PodMesh) -> None:
    """containerd stopping closes edged's connection: noticed without a check (the check is
    every 30 s), and its return within a couple of seconds. Last in the module."""
    assert await runtime_condition(mesh) == "True"
    mesh.containerd.stop()
    t0 = time.monotonic()

    async def is_(status: str) -> bool:
        return await runtime_condition(mesh) == status

    await eventually(lambda: is_("False"), timeout=15, msg="ContainerRuntimeReady=False")
    assert time.monotonic() - t0 < 15
    mesh.containerd.start(die_with_parent=True)
    mesh.containerd.wait_ready()
    await eventually(lambda: is_("True"), timeout=15, msg="ContainerRuntimeReady=True again")


# -- the all-in-one process's children ---------------------------------------------------------
async def test_a_child_s_exit_is_an_event_and_it_is_restarted(tmp_path: Path) -> None:
    child = Child(name="sleeper", argv=[sys.executable, "-c", "import time; time.sleep(60)"], log=str(tmp_path / "sleeper.log"))
    kids = Children([child])
    await kids.start()
    try:
        assert child.popen is not None
        first = child.popen.pid
        waiter = asyncio.create_task(exited(Child(name="x", argv=[], log="", popen=child.popen)))
        await asyncio.sleep(0.3)
        assert not waiter.done(), "returns only when the process has ended"
        t0 = time.monotonic()
        child.popen.kill()
        await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - t0 < 1.0, "the pidfd tells at once"
        await eventually(lambda: child.alive and child.popen is not None and child.popen.pid != first, timeout=10, msg="restarted")
        assert child.restarts == 1
    finally:
        await kids.stop()
    assert child.popen is None or child.popen.poll() is not None
