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

from edgebus import names, topology
from edgebus.testing.servers import Cluster, start_leaf
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually


async def _probes_seen(cluster: Cluster, tmp_path: Path, probe: str) -> tuple[int, Any]:
    """Start edgehub on a node behind a proxy; count the JetStream INFO requests that
    reach the hub over 4 s of a steady link."""
    hub = cluster.hub
    leaf = start_leaf(tmp_path / probe, hub, "edge-1", via_proxy=True)
    admin = hub.bus("test")
    await admin.connect(retry_for=10)
    await topology.ensure_cloud_streams(admin)
    seen: list[str] = []

    async def count(m: Any) -> None:
        seen.append(m.subject)

    sub = await admin._nc.subscribe("$JS.API.INFO", cb=count)  # the hub maps $JS.cloud.API.> here
    svc = build_service(
        "edgehub",
        node="edge-1",
        nats=leaf.nats_settings("edgehub"),
        edgehub={"link_probe": probe, "system_nkey_file": str(leaf.identity.local_nkey_file("system")), "link_check_interval": 0.2},
    )
    await svc.start()
    ctx = svc.ctx
    try:
        await eventually(lambda: ctx.link.up, timeout=30, msg="link up")
        await asyncio.sleep(0.5)
        seen.clear()
        await asyncio.sleep(4.0)
        n = len(seen)
        if probe == "leafz":
            assert leaf.proxy is not None
            leaf.proxy.cut()
            await eventually(lambda: not ctx.link.up, timeout=20, msg="link down after the cut")
            leaf.proxy.heal()
            await eventually(lambda: ctx.link.up, timeout=30, msg="link up after healing")
        return n, ctx
    finally:
        await sub.unsubscribe()
        await svc.stop()
        await admin.close()
        leaf.server.stop()
        if leaf.proxy is not None:
            leaf.proxy.close()


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
    hub = cluster.hub
    leaf = start_leaf(tmp_path, hub, "edge-1", via_proxy=True, ping_interval="2s")
    assert leaf.proxy is not None
    admin = hub.bus("test")
    await admin.connect(retry_for=10)
    await topology.ensure_cloud_streams(admin)
    watcher = leaf.bus("leafz-watcher", user="system")
    await watcher.connect(retry_for=10)
    asked: list[float] = []

    async def count(m: Any) -> None:
        asked.append(time.monotonic())

    await watcher.subscribe(names.LEAFZ_SUBJECT, count)
    svc = build_service(
        "edgehub",
        node="edge-1",
        nats=leaf.nats_settings("edgehub"),
        edgehub={"system_nkey_file": str(leaf.identity.local_nkey_file("system")), "link_check_interval": 0.2, "link_idle_check_interval": 300},
    )
    await svc.start()
    ctx = svc.ctx
    try:
        await eventually(lambda: ctx.link.up, timeout=30, msg="link up")
        await asyncio.sleep(2.0)  # the checks that follow the link coming up
        asked.clear()
        await asyncio.sleep(4.0)
        assert asked == [], f"a steady link was asked about {len(asked)} times in 4 s"
        t0 = time.monotonic()
        getattr(leaf.proxy, fault)()
        await eventually(lambda: not ctx.link.up, timeout=30, msg=f"link down after the {fault}")
        noticed = time.monotonic() - t0
        assert noticed < 15, f"link loss ({fault}) noticed after {noticed:.1f}s"
        leaf.proxy.heal()
        await eventually(lambda: ctx.link.up, timeout=30, msg="link up after healing")
    finally:
        await svc.stop()
        await watcher.close()
        await admin.close()
        leaf.server.stop()
        leaf.proxy.close()
