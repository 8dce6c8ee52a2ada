"""The outbox backlog reaches the Node: a real edgehub behind a cuttable link and a real
cloudhub. While the link is cut the node piles up outbox messages and the cloud keeps the
last report (taken while linked); when the link heals edgehub reports what the outage left
(every message, its bytes, the age of the oldest) before it drains it, then 0 once drained."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from edgebus import names
from edgebus.envelope import Envelope
from edgebus.objects import NODES
from edgebus.objectstore import ObjectStore
from edgebus.testing.servers import Cluster, cloudhub_identity, register_node, start_leaf
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually

pytestmark = pytest.mark.timeout(180)

N = 400


async def test_backlog_reported_kept_offline_and_drained(cluster: Cluster, tmp_path: Path) -> None:
    hub = cluster.hub
    leaf = start_leaf(tmp_path, hub, "edge-1", via_proxy=True)
    cluster.leaves["edge-1"] = leaf
    assert leaf.proxy is not None
    bus = hub.bus("test")
    await bus.connect(retry_for=10)
    store = ObjectStore(bus)
    await store.ensure()
    await register_node(store, "edge-1")
    edge = leaf.bus("test-edge")
    await edge.connect(retry_for=10)
    svcs = [
        build_service("cloudhub", nats=hub.nats_settings("cloudhub"), cloudhub=cloudhub_identity(hub, node_grace_period=60)),
        build_service("edgehub", node="edge-1", nats={**leaf.nats_settings("edgehub"), "ping_interval": 1}, edgehub={"heartbeat_interval": 0.5, "backlog_interval": 0.3, "system_nkey_file": str(leaf.identity.local_nkey_file("system")), "link_check_interval": 0.2}),
    ]
    for s in svcs:
        await s.start()
    seen: list[dict[str, Any]] = []

    async def backlog() -> dict[str, Any] | None:
        n = await store.get(NODES, None, "edge-1")
        raw = (n["metadata"].get("annotations") or {}).get(names.ANN_OUTBOX_BACKLOG)
        b = json.loads(raw) if raw else None
        if b and (not seen or b != seen[-1]):
            seen.append(b)
        return b

    try:
        hubsvc = svcs[1].ctx
        await eventually(lambda: hubsvc.link.up, timeout=30, msg="link up")
        await eventually(lambda: _is(backlog(), lambda b: b["messages"] == 0), timeout=30, msg="a first report: nothing pending")
        leaf.proxy.cut()
        await eventually(lambda: not hubsvc.link.up, timeout=20, msg="link down")
        before = await backlog()
        t_cut = time.monotonic()
        for i in range(N):
            env = Envelope.new(source="test", operation="event", resource="events", content={"n": i, "pad": "x" * 200})
            await edge.js_publish(names.outbox_subject("edge-1", names.UP_EVENT), env, stream=names.STREAM_EDGE_UP)
        await asyncio.sleep(2.0)  # offline a while: the cloud keeps what it had
        assert await backlog() == before, "the cloud's last report changed while the node was offline"
        offline = time.monotonic() - t_cut
        leaf.proxy.heal()
        big = await eventually(lambda: _is(backlog(), lambda b: b["messages"] >= N), timeout=60, msg="the outage's backlog reported")
        assert big["bytes"] >= N * 200, big
        assert big["oldestSeconds"] >= offline - 1.0, (big, offline)
        await eventually(lambda: _is(backlog(), lambda b: b["messages"] == 0), timeout=60, msg="drained: 0 reported")
        assert seen[-1]["messages"] == 0 and any(b["messages"] >= N for b in seen)
    finally:
        for s in reversed(svcs):
            await s.stop()
        await edge.close()
        await bus.close()


async def _is(value: Any, pred: Any) -> Any:
    v = await value
    return v if v is not None and pred(v) else None
