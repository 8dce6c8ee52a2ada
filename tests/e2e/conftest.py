from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgebus.bus import Bus
from edgebus.lab import Lab, LabPlan
from edgebus.metaclient import MetaClient
from edgebus.objects import NODES
from edgebus.objectstore import ObjectStore
from edgebus.testing.labrun import LabCli, free_base_port
from edgebus.testing.proxy import TcpProxy
from edgebus.testing.waiting import eventually


@dataclass
class RunningLab:
    lab: Lab
    proxy: TcpProxy | None
    cloud: Bus
    edge: Bus
    store: ObjectStore
    meta: MetaClient

    async def node_ready(self, node: str = "edge-1") -> bool:
        try:
            n = await self.store.get(NODES, None, node)
        except Exception:
            return False
        return any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))


async def start_lab(
    tmp_path: Path, *, proxy: bool, grace: float = 5.0, nodes: int = 1, heartbeat: float = 1.0, cgroups: dict[str, str] | None = None, **plan_kw: Any
) -> RunningLab:
    """A lab of ``nodes`` nodes (``edge-1`` ...); ``proxy``: edge-1's leaf link goes through
    a TcpProxy (cut / freeze / heal); ``cgroups``: processes run in memory cgroups."""
    for _ in range(20):
        base = free_base_port(nodes, **{k: v for k, v in plan_kw.items() if k in ("replicas", "cloud_servers")})
        try:
            px = TcpProxy("127.0.0.1", base + 1, port=base + 9) if proxy else None
            break
        except OSError:
            continue
    if px is not None:
        px.start()
    plan = LabPlan(
        data_dir=str(tmp_path / "lab"),
        nodes=[f"edge-{i}" for i in range(1, nodes + 1)],
        base_port=base,
        grace=grace,
        heartbeat=heartbeat,
        leaf_urls={"edge-1": f"nats-leaf://127.0.0.1:{px.port}"} if px else {},
        **plan_kw,
    )
    lab = Lab(plan, die_with_supervisor=True, cgroups=cgroups)
    await lab.up()
    cloud = plan.cloud_bus("test-cloud", request_timeout=5)
    await cloud.connect(retry_for=10)
    edge = plan.node_bus("edge-1", "test-edge", request_timeout=5)
    await edge.connect(retry_for=10)
    store = ObjectStore(cloud)
    rl = RunningLab(lab, px, cloud, edge, store, MetaClient(edge, "edge-1", timeout=10))
    for i in range(1, nodes + 1):
        await eventually(lambda i=i: rl.node_ready(f"edge-{i}"), timeout=30, msg=f"edge-{i} Ready")
    return rl


async def stop_lab(rl: RunningLab) -> None:
    for b in (rl.cloud, rl.edge):
        await b.close()
    await rl.lab.down()
    if rl.proxy is not None:
        rl.proxy.close()


#: the two ways an edge node runs: a process per service, or all in one process
MODES = ("processes", "all-in-one")
#: run a test of edge behaviour once per mode (``edge_mode`` is then the mode's name)
BOTH_MODES = pytest.mark.parametrize("edge_mode", MODES, indirect=True)


@pytest.fixture
def edge_mode(request: pytest.FixtureRequest) -> str:
    """How the lab's edge nodes run (default: a process per service)."""
    return str(getattr(request, "param", "processes"))


@pytest.fixture
async def proxied_lab(tmp_path: Path, edge_mode: str) -> AsyncIterator[RunningLab]:
    rl = await start_lab(tmp_path, proxy=True, all_in_one=edge_mode == "all-in-one")
    try:
        yield rl
    finally:
        await stop_lab(rl)


@pytest.fixture
async def plain_lab(tmp_path: Path, edge_mode: str) -> AsyncIterator[RunningLab]:
    rl = await start_lab(tmp_path, proxy=False, all_in_one=edge_mode == "all-in-one")
    try:
        yield rl
    finally:
        await stop_lab(rl)


async def restart_process(lab: Lab, name: str, *, kill: bool = False) -> float:
    """Stop (SIGTERM, or SIGKILL) and start one lab process; returns when it is ready again."""
    p = lab.procs[name]
    assert p.popen is not None
    if kill:
        p.popen.kill()
    else:
        p.popen.terminate()
    await asyncio.to_thread(p.popen.wait, 15)
    lab._spawn(p)
    await lab._wait_ready(p)
    return asyncio.get_running_loop().time()


#: the node grace period of labs started by the ``lab`` fixture
GRACE = 4


@pytest.fixture
def lab(tmp_path: Path, edge_mode: str):
    """A two-node lab started with the real CLI (``edgebus up --detach``), heartbeats every 1 s."""
    cli = LabCli(tmp_path / "lab")
    base = free_base_port(2)
    aio = ["--all-in-one"] if edge_mode == "all-in-one" else []
    out = cli.run("up", "--detach", "--nodes", "2", "--base-port", str(base), "--grace", str(GRACE), "--heartbeat", "1", *aio).stdout
    assert "edgebus lab is up" in out
    try:
        yield cli
    finally:
        cli.run("down", check=False)
