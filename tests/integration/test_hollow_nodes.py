"""Hollow nodes against a real hub, cloudhub (with its identity authority) and
edgecontroller: they join with a bootstrap token, connect as leafnodes with their own
credentials, turn Ready from their forwarded heartbeats, receive a pod bound to them
through their durable downstream consumer (made by cloudhub at join) and report it Running; the hub refuses what a node's
permission template does not allow."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgebus import names
from edgebus.bus import Bus
from edgebus.envelope import Envelope
from edgebus.identity.tokens import Token, secret_object
from edgebus.objects import NODES, PODS, SECRETS
from edgebus.objectstore import ObjectStore
from edgebus.testing.hollow import HollowFleet
from edgebus.testing.servers import Hub, cloudhub_identity
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually
from services.cloudhub import logic

NODES_N = 3


@pytest.fixture
async def cloud(hub: Hub, bus: Bus) -> AsyncIterator[ObjectStore]:
    store = ObjectStore(bus)
    await store.ensure()
    await store.ensure_system_namespaces()
    svcs = [
        build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub=cloudhub_identity(hub, node_grace_period=20)),
        build_service("edgecontroller", nats=hub.nats_settings("edgecontroller")),
    ]
    for s in svcs:
        await s.start()
    try:
        yield store
    finally:
        for s in reversed(svcs):
            await s.stop()


def ready(node: dict[str, Any]) -> bool:
    return str((logic.ready_condition(node) or {}).get("status") or "") == "True"


@pytest.mark.timeout(180)
async def test_hollow_nodes_join_turn_ready_and_run_pods(hub: Hub, bus: Bus, cloud: ObjectStore, tmp_path: Path) -> None:
    store = cloud
    tok = Token.new(hub.pki.info["caPin"])
    await store.create(SECRETS, secret_object(tok, ttl=dt.timedelta(hours=1), uses=NODES_N))
    fleet = HollowFleet(tmp_path / "hollow", host="127.0.0.1", leaf_port=hub.leaf_port, ca_file=str(hub.pki.ca_file), heartbeat=1.0)
    nodes = [f"hollow-{i}" for i in range(NODES_N)]
    await fleet.join(bus, nodes, tok.bootstrap)
    assert all(fleet.nodes[n].ident.joined for n in nodes)
    await fleet.connect(timeout=60)
    fleet.start()
    try:

        async def all_ready() -> bool:
            objs, _ = await store.list(NODES)
            return sum(1 for o in objs if ready(o) and o["metadata"]["name"] in nodes) == NODES_N

        await eventually(all_ready, timeout=60, msg="every hollow node Ready")
        node = await store.get(NODES, None, "hollow-0")
        assert node["status"]["allocatable"]["pods"] == "110", "the node status was forwarded and merged"
        assert fleet.stats.acked >= NODES_N and fleet.stats.nacked == 0  # each node status forwarded (heartbeats ask for no ack)

        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p1", "namespace": "default"},
            "spec": {"nodeName": "hollow-1", "containers": [{"name": "main", "image": "busybox"}]},
        }
        await store.create(PODS, pod, namespace="default")

        async def running() -> bool:
            p = await store.get(PODS, "default", "p1")
            return (p.get("status") or {}).get("phase") == "Running"

        await eventually(running, timeout=60, msg="the pod reported Running by its hollow node")
        assert ("default", "p1") in fleet.nodes["hollow-1"].pods
        assert not fleet.nodes["hollow-0"].pods, "a node's downstream holds only its own pods"

        # the hub enforces the node's permission template: another node's upstream is refused
        h0 = fleet.nodes["hollow-0"]
        env = Envelope.new(source="edgehub", operation="keepalive", resource="nodes", content={"node": "hollow-2", "time": 1, "link": True})
        errors = len(fleet.stats.errors)
        h0._hpub(names.up_subject("hollow-2", names.UP_HEARTBEAT), "", env.headers(), env.encode())
        await eventually(lambda: len(fleet.stats.errors) > errors, timeout=10, msg="a permissions violation")
        assert "Permissions Violation" in fleet.stats.errors[-1]
        await asyncio.sleep(0)
    finally:
        await fleet.stop()
    assert not [e for e in fleet.stats.errors if "Permissions Violation" not in e]
