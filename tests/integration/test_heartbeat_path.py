"""edgehub's heartbeats against real servers: sent only while the link is up, straight into
the cloud's upstream stream, never through the outbox (a heartbeat kept while offline says
nothing when it arrives: the cloud counts one only if it stored it within the grace
period)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from edgebus import names
from edgebus.bus import get_last
from edgebus.envelope import OP_KEEPALIVE, Envelope
from edgebus.testing.servers import Cluster
from edgebus.testing.services import edgehub_on_leaf
from edgebus.testing.waiting import eventually


@pytest.mark.timeout(120)
async def test_heartbeats_go_straight_to_the_cloud_and_none_is_kept_offline(cluster: Cluster, tmp_path: Path) -> None:
    async with edgehub_on_leaf(cluster.hub, tmp_path, link_check_interval=0.2, heartbeat_interval=0.3) as rig:
        beats: list[tuple[float, dict[str, str]]] = []
        replies: list[str] = []
        sizes: list[int] = []

        async def seen(m: Any) -> None:
            beats.append((time.monotonic(), dict(m.headers or {})))
            replies.append(m.reply)
            sizes.append(len(m.data))

        admin = rig.admin
        await admin.subscribe(names.up_subject("edge-1", names.UP_HEARTBEAT), seen)
        edge = rig.leaf.bus("test-edge")
        await edge.connect(retry_for=10)
        await rig.start()
        ctx = rig.ctx
        try:
            await eventually(lambda: len(beats) >= 3, timeout=30, msg="heartbeats in the cloud")
            assert all(names.HDR_UP_SEQ not in h for _, h in beats), "a heartbeat is not an outbox message"
            # what crosses an idle link every 10 s: the bare envelope, asking for nothing back
            assert all(h == {} for _, h in beats), f"a heartbeat with headers: {beats[0][1]}"
            assert replies and all(r == "" for r in replies), f"a heartbeat asked for an ack: {replies[0]!r}"
            assert max(sizes) <= 160, f"a {max(sizes)}-byte heartbeat"
            stored = await get_last(admin, names.STREAM_UP, names.up_subject("edge-1", names.UP_HEARTBEAT))
            assert stored is not None and Envelope.decode(stored.data).route.operation == OP_KEEPALIVE, "stored in EDGEBUS_UP"
            rig.proxy.cut()
            await eventually(lambda: not ctx.link.up, timeout=20, msg="link down")
            await asyncio.sleep(2.0)  # ~6 heartbeat intervals offline
            healed = time.monotonic()
            rig.proxy.heal()
            await eventually(lambda: ctx.link.up, timeout=30, msg="link up again")
            await eventually(lambda: any(t > healed for t, _ in beats), timeout=10, msg="heartbeats again after the heal")
            await asyncio.sleep(0.5)
            after = [t for t, _ in beats if t > healed]
            first = after[0]
            burst = [t for t in after if t - first < 0.25]
            assert len(burst) == 1, f"{len(burst)} heartbeats at once after the heal: offline ones were kept"
            assert await get_last(edge, names.STREAM_EDGE_UP, names.outbox_subject("edge-1", names.UP_HEARTBEAT)) is None, "a heartbeat in the outbox"
        finally:
            await edge.close()
