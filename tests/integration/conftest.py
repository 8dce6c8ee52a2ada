"""In-process cloud and edge services against a real hub and leaf (the integration tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebus.natsd import free_port
from edgebus.objectstore import ObjectStore
from edgebus.testing.services import build_service
from edgebus.testing.servers import cloudhub_identity, register_node, start_leaf
from tests.leakcheck import _no_leaked_tasks  # noqa: F401 - autouse: no test leaks asyncio tasks


@pytest.fixture
async def mesh(cluster, tmp_path: Path):
    """cloudhub + edgecontroller on the hub, metamanager + edgehub on edge-1's leaf."""
    leaf = start_leaf(tmp_path, cluster.hub, "edge-1")
    cluster.leaves["edge-1"] = leaf
    hub = cluster.hub
    svcs = [
        build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub=cloudhub_identity(hub, node_grace_period=3)),
        build_service("edgecontroller", nats=hub.nats_settings("edgecontroller")),
        build_service("metamanager", node="edge-1", nats=leaf.nats_settings("metamanager"), metamanager={"data_dir": str(tmp_path / "mm"), "metaserver_port": free_port()}),
        build_service("edgehub", node="edge-1", nats=leaf.nats_settings("edgehub"), edgehub={"heartbeat_interval": 0.5}),
    ]
    bus = hub.bus("test")
    await bus.connect(retry_for=5)
    store = ObjectStore(bus)
    await store.ensure()
    await store.ensure_system_namespaces()
    await register_node(store, "edge-1")
    for s in svcs:
        await s.start()
    try:
        yield store, bus, svcs
    finally:
        await bus.close()
        for s in reversed(svcs):
            await s.stop()
