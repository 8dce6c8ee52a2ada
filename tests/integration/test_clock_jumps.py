"""An edge whose clock jumps (an hour ahead, then an hour behind, through the injectable
clock edge services stamp reports with): the node is never taken for dead, its newer reports
still land, and a stale report processed late never overwrites a newer one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edgebus import clock, names
from edgebus.bus import Bus, consumer_state, stream_state
from edgebus.envelope import Envelope
from edgebus.natsd import free_port
from edgebus.objects import NODES, PODS
from edgebus.objectstore import ObjectStore
from edgebus.testing.services import build_service
from edgebus.testing.servers import start_leaf
from edgebus.testing.waiting import eventually

GRACE = 3.0


async def _ready(store: ObjectStore) -> bool:
    n = await store.get(NODES, None, "edge-1")
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (n.get("status") or {}).get("conditions") or [])


async def _edgehub_report_time(store: ObjectStore) -> int:
    n = await store.get(NODES, None, "edge-1")
    return int(((n.get("metadata") or {}).get("annotations") or {}).get("edgebus.io/status-time.edgehub", "0"))


async def test_an_edge_clock_jumping_an_hour_either_way(cluster, tmp_path: Path) -> None:
    leaf = start_leaf(tmp_path, cluster.hub, "edge-1")
    cluster.leaves["edge-1"] = leaf
    svcs = [
        build_service("cloudhub", nats=cluster.hub.nats_settings("cloudhub"), cloudhub={"node_grace_period": GRACE, "lifecycle_interval": 0.2, "auto_register_nodes": True}),
        build_service("edgecontroller", nats=cluster.hub.nats_settings("edgecontroller")),
        build_service("metamanager", node="edge-1", nats=leaf.nats_settings("metamanager"), metamanager={"data_dir": str(tmp_path / "mm"), "metaserver_port": free_port()}),
        build_service("edgehub", node="edge-1", nats=leaf.nats_settings("edgehub"), edgehub={"heartbeat_interval": 0.3, "status_interval": 0.5, "status_report_interval": 0.5}),
    ]
    for s in svcs:
        await s.start()
    bus = cluster.hub.bus("test")
    await bus.connect(retry_for=5)
    store = ObjectStore(bus)
    try:
        await eventually(lambda: _ready(store), timeout=20, msg="edge-1 Ready")
        for jump in (+3600.0, -7200.0):
            clock.jump(jump)
            before = await _edgehub_report_time(store)
            deadline = time.monotonic() + 3 * GRACE
            while time.monotonic() < deadline:
                assert await _ready(store), f"edge-1 taken for dead after its clock jumped {jump:+.0f}s"
                await asyncio.sleep(0.2)
            # its reports, stamped with the jumped clock, keep landing (also those that look older)
            now_edge = clock.now_ns()
            got = await eventually(lambda: _edgehub_report_time(store), timeout=10, msg="node status after the jump")
            assert got != before and abs(got - now_edge) < 30e9, "the node's newer status reports were refused"
    finally:
        clock.reset()
        await bus.close()
        for s in reversed(svcs):
            await s.stop()


async def test_a_stale_report_processed_late_never_overwrites_a_newer_one(cluster) -> None:
    svc = build_service("cloudhub", nats=cluster.hub.nats_settings("cloudhub"), cloudhub={"node_grace_period": GRACE, "auto_register_nodes": True})
    await svc.start()
    bus = cluster.hub.bus("test")
    await bus.connect(retry_for=5)
    store = ObjectStore(bus)
    try:
        await store.ensure()
        await store.ensure_system_namespaces()
        await store.create(NODES, {"metadata": {"name": "edge-1"}})
        pod = await store.create(PODS, {"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}]}})
        uid = pod["metadata"]["uid"]
        subject = names.up_subject("edge-1", names.UP_STATUS, names.ObjectRef("pods", "default", "p"))
        t = time.time_ns()
        # the edge's clock went back an hour between the two reports; the later one (outbox
        # sequence 11) is processed first, the earlier one (10) after it (a redelivery)
        for seq, when, phase in ((11, t - 3600 * 10**9, "Running"), (10, t, "Pending")):
            env = Envelope.new(source="edged", operation="update", resource="pods", content={"time": when, "uid": uid, "status": {"phase": phase}})
            hdrs = {names.HDR_UP_SEQ: str(seq), names.HDR_UP_EPOCH: "outbox-1", names.HDR_MSG_ID: f"edge-1:outbox-1:{seq}"}
            await bus.js_publish(subject, env, headers=hdrs, stream=names.STREAM_UP)
        last = (await stream_state(bus, names.STREAM_UP)).last_seq
        await eventually(lambda: _processed(bus, last), timeout=15, msg="cloudhub processed both")
        got = await store.get(PODS, "default", "p")
        assert got["status"]["phase"] == "Running", "the earlier report overwrote the later one"
    finally:
        await bus.close()
        await svc.stop()


async def _processed(bus: Bus, seq: int) -> bool:
    st = await consumer_state(bus, names.STREAM_UP, names.CONSUMER_CLOUDHUB)
    return st.ack_floor_stream_seq >= seq and st.num_ack_pending == 0
