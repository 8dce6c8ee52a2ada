"""edgehub's link check against real servers: with the node server's system credential it
asks its own server's LEAFZ, so a steady link carries no probe at all; the link still goes
down when the leaf connection is cut and up again when it heals. The server's connection
advisories wake the check, so a steady link is not even asked of the node's own server, and
a lost one is still noticed within seconds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from edgebus import names
from edgebus.testing.servers import Cluster
from edgebus.testing.services import edgehub_on_leaf
from edgebus.testing.waiting import eventually


async def _probes_seen(cluster: Cluster, tmp_path: Path, probe: str) -> tuple[int, Any]:
    """Start edgehub on a node behind a proxy; count the JetStream INFO requests that
    reach the hub over 4 s of a steady link."""
    async with edgehub_on_leaf(cluster.hub, tmp_path / probe, link_probe=probe, link_check_interval=0.2) as rig:
        seen: list[str] = []

        async def count(m: Any) -> None:
            seen.append(m.subject)

        sub = await rig.admin._nc.subscribe("$JS.API.INFO", cb=count)  # the hub maps $JS.cloud.API.> here
        await rig.start()
        ctx = rig.ctx
        try:
            await eventually(lambda: ctx.link.up, timeout=30, msg="link up")
            await asyncio.sleep(0.5)
            seen.clear()
            await asyncio.sleep(4.0)
            n = len(seen)
            if probe == "leafz":
                rig.proxy.cut()
                await eventually(lambda: not ctx.link.up, timeout=20, msg="link down after the cut")
                rig.proxy.heal()
                await eventually(lambda: ctx.link.up, timeout=30, msg="link up after healing")
            return n, ctx
        finally:
            await sub.unsubscribe()


@pytest.mark.timeout(180)
async def test_leafz_link_check_sends_nothing_over_a_steady_link(cluster: Cluster, tmp_path: Path) -> None:
    baseline, _ = await _probes_seen(cluster, tmp_path, "jetstream")
    assert baseline >= 5, f"the JetStream probe is seen on the hub ({baseline} in 4 s)"
    n, _ = await _probes_seen(cluster, tmp_path, "leafz")
    assert n == 0, f"{n} link probes crossed a steady link"


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fault", ["cut", "freeze"])
async def test_a_steady_link_is_not_asked_about_and_a_lost_one_is_noticed_at_once(cluster: Cluster, tmp_path: Path, fault: str) -> None:
    """With a 300 s idle check, only the node server's advisories can explain a link loss
    noticed within seconds: a reset connection (``cut``) and a silent one (``freeze``: the
    leaf's pings time out: every 2 s here, two missed) alike. A steady link is not asked
    about at all."""
    async with edgehub_on_leaf(cluster.hub, tmp_path, ping_interval="2s", link_check_interval=0.2, link_idle_check_interval=300) as rig:
        watcher = rig.leaf.bus("leafz-watcher", user="system")
        await watcher.connect(retry_for=10)
        asked: list[float] = []

        async def count(m: Any) -> None:
            asked.append(time.monotonic())

        await watcher.subscribe(names.LEAFZ_SUBJECT, count)
        await rig.start()
        ctx = rig.ctx
        try:
            await eventually(lambda: ctx.link.up, timeout=30, msg="link up")
            await asyncio.sleep(2.0)  # the checks that follow the link coming up
            asked.clear()
            await asyncio.sleep(4.0)
            assert asked == [], f"a steady link was asked about {len(asked)} times in 4 s"
            t0 = time.monotonic()
            getattr(rig.proxy, fault)()
            await eventually(lambda: not ctx.link.up, timeout=30, msg=f"link down after the {fault}")
            noticed = time.monotonic() - t0
            assert noticed < 15, f"link loss ({fault}) noticed after {noticed:.1f}s"
            rig.proxy.heal()
            await eventually(lambda: ctx.link.up, timeout=30, msg="link up after healing")
        finally:
            await watcher.close()
