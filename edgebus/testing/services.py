"""Run edgebus services in-process against real servers (tests and benchmarks)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebus import topology
from edgebus.bus import Bus
from edgebus.runtime import Service
from edgebus.testing.proxy import TcpProxy
from edgebus.testing.servers import Hub, Leaf, start_leaf


def build_service(name: str, **settings: Any) -> Service[Any]:
    """Build ``services.<name>`` from settings given as keyword groups, e.g.
    ``build_service("metamanager", node="edge-1", nats={"url": u}, metamanager={"data_dir": d})``."""
    config = importlib.import_module(f"services.{name}.config")
    mod = importlib.import_module(f"services.{name}.service")
    build: Callable[[Any], Service[Any]] = mod.build
    return build(config.Settings(**settings))


@dataclass
class EdgehubRig:
    """A node's leaf server dialing the hub through a cuttable, byte-counting proxy, the
    cloud's streams, and the node's real edgehub (with its server's system credential);
    ``admin`` is a cloud connection. Built by :func:`edgehub_on_leaf`."""

    leaf: Leaf
    proxy: TcpProxy
    admin: Bus
    svc: Service[Any]
    started: bool = False

    @property
    def ctx(self) -> Any:
        return self.svc.ctx

    async def start(self) -> None:
        await self.svc.start()
        self.started = True


@asynccontextmanager
async def edgehub_on_leaf(hub: Hub, root: Path, node: str = "edge-1", *, ping_interval: str | None = None, **edgehub: Any) -> AsyncIterator[EdgehubRig]:
    """An :class:`EdgehubRig` (``edgehub``: settings over the system credential; edgehub is
    started by :meth:`EdgehubRig.start`, so a test can watch before it runs); everything is
    stopped on exit."""
    leaf = start_leaf(root, hub, node, via_proxy=True, ping_interval=ping_interval)
    assert leaf.proxy is not None
    admin = hub.bus("rig")
    rig: EdgehubRig | None = None
    try:
        await admin.connect(retry_for=10)
        await topology.ensure_cloud_streams(admin)
        svc = build_service("edgehub", node=node, nats=leaf.nats_settings("edgehub"), edgehub={"system_nkey_file": str(leaf.identity.local_nkey_file("system")), **edgehub})
        rig = EdgehubRig(leaf, leaf.proxy, admin, svc)
        yield rig
    finally:
        if rig is not None and rig.started:
            await rig.svc.stop()
        await admin.close()
        leaf.server.stop()
        leaf.proxy.close()
