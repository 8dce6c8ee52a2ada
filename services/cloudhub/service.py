"""cloudhub wiring: join, upstream ingestion, node lifecycle."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from edgebus import topology
from edgebus.errors import Conflict, NotFound
from edgebus.objects import NODES
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service, setup_logging
from services.cloudhub import logic
from services.cloudhub.config import Settings
from services.cloudhub.handlers import Ctx, router

log = logging.getLogger("edgebus.cloudhub")


def build(settings: Settings | None = None) -> Service[Ctx]:
    settings = settings or Settings()
    svc: Service[Ctx] = Service("cloudhub", settings, router=router)
    store = ObjectStore(svc.bus, replicas=settings.cloudhub.kv_replicas)
    ctx = Ctx(settings=settings, store=store)
    svc.ctx = ctx

    @svc.on_start
    async def ensure(s: Service[Ctx]) -> None:
        await store.ensure()
        await topology.ensure_cloud_streams(s.bus, replicas=settings.cloudhub.stream_replicas)

    async def lifecycle() -> None:
        """Mark nodes whose heartbeats stopped NotReady (Ready=Unknown, as Kubernetes)."""
        grace = settings.cloudhub.node_grace_period
        while True:
            await asyncio.sleep(settings.cloudhub.lifecycle_interval)
            nodes, _ = await store.list(NODES)
            now = dt.datetime.now(dt.UTC)
            for n in nodes:
                if not logic.is_expired(n, now, grace):
                    continue
                name = n["metadata"]["name"]

                def expire(obj: dict, now: dt.datetime = now) -> dict | None:
                    if not logic.is_expired(obj, now, grace):
                        return None
                    return logic.set_ready(obj, "Unknown", "NodeStatusUnknown", "edgebus edge node stopped posting heartbeats.", now, heartbeat=False)

                try:
                    if await store.mutate(NODES, None, name, expire) is not None:
                        log.warning("node %s is NotReady: no heartbeat for %.0fs", name, grace)
                except (NotFound, Conflict):
                    pass

    svc.task("node-lifecycle", lifecycle)
    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("cloudhub", settings)
    run(lambda: build(settings))
