"""In-process cloud and edge services against a real hub and leaf (the integration tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgebus.bus import Bus
from edgebus.natsd import free_port
from edgebus.objectstore import ObjectStore
from edgebus.testing.services import build_service
from edgebus.testing.servers import start_leaf


@pytest.fixture
async def mesh(cluster, tmp_path: Path):
    """cloudhub + edgecontroller on the hub, metamanager + edgehub on edge-1's leaf."""
    leaf = start_leaf(tmp_path, cluster.hub, "edge-1")
    cluster.leaves["edge-1"] = leaf
    common_cloud = {"nats": {"url": cluster.hub.url}}
    svcs = [
        build_service("cloudhub", **common_cloud, cloudhub={"node_grace_period": 3, "bootstrap_tokens": ["t0k"]}),
        build_service("edgecontroller", **common_cloud),
        build_service("metamanager", node="edge-1", nats={"url": leaf.url}, metamanager={"data_dir": str(tmp_path / "mm"), "metaserver_port": free_port()}),
        build_service("edgehub", node="edge-1", nats={"url": leaf.url}, edgehub={"join_token": "t0k", "heartbeat_interval": 0.5}),
    ]
    for s in svcs:
        await s.start()
    bus = Bus(cluster.hub.url, name="test")
    await bus.connect(retry_for=5)
    store = ObjectStore(bus)
    await store.ensure()
    await store.ensure_system_namespaces()
    try:
        yield store, bus, svcs
    finally:
        await bus.close()
        for s in reversed(svcs):
            await s.stop()
