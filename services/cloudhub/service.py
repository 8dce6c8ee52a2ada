"""cloudhub wiring: join, upstream ingestion, node lifecycle."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from pathlib import Path

from edgebus import topology
from edgebus.bus import Bus, BusAuth
from edgebus.identity.cloud import CloudPki
from edgebus.errors import Conflict, NotFound
from prometheus_client import Gauge

from edgebus.objects import NODES, PODS
from edgebus.objects.resources import parse_time
from edgebus.objects.tables import node_status
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service, setup_logging
from services.cloudhub import logic
from services.cloudhub.config import Settings
from services.cloudhub.handlers import Ctx, router
from services.cloudhub.identity import Authority, IdentitySettings

log = logging.getLogger("edgebus.cloudhub")

NODE_COUNT = Gauge("edgebus_nodes", "Nodes by status (Ready / NotReady)", ["status"])
POD_COUNT = Gauge("edgebus_pods", "Pods by phase", ["phase"])
HEARTBEAT_AGE = Gauge("edgebus_node_heartbeat_age_seconds", "Seconds since a node's last recorded heartbeat", ["node"])


def build(settings: Settings | None = None) -> Service[Ctx]:
    settings = settings or Settings()
    svc: Service[Ctx] = Service("cloudhub", settings, router=router)
    store = ObjectStore(svc.bus, replicas=settings.cloudhub.kv_replicas)
    ctx = Ctx(settings=settings, store=store, authority=_authority(svc, settings, store))
    svc.ctx = ctx

    @svc.on_start
    async def ensure(s: Service[Ctx]) -> None:
        await store.ensure()
        await topology.ensure_cloud_streams(s.bus, replicas=settings.cloudhub.stream_replicas)
        if ctx.authority is not None:
            await ctx.authority.ensure()
            if ctx.authority.sysbus is not None:
                await ctx.authority.sysbus.connect()
                # a restarted server may have reloaded an older account: push again at once
                ctx.authority.sysbus.on_state(lambda up: ctx.authority.resync() if up and ctx.authority else None)

    if ctx.authority is not None:
        authority = ctx.authority
        svc.lead("cloudhub-identity", authority.run, ttl=6.0, synced=lambda: authority.pushed is not None)
        if authority.sysbus is not None:
            sysbus = authority.sysbus
            svc.on_stop(lambda _s: sysbus.close())

    async def lifecycle() -> None:
        """Mark nodes whose heartbeats stopped NotReady (Ready=Unknown, as Kubernetes)."""
        grace = settings.cloudhub.node_grace_period
        while True:
            await asyncio.sleep(settings.cloudhub.lifecycle_interval)
            nodes, _ = await store.list(NODES)
            now = dt.datetime.now(dt.UTC)
            record_nodes(nodes, now)
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

    async def count_pods() -> None:
        while True:
            pods, _ = await store.list(PODS)
            phases: dict[str, int] = {}
            for p in pods:
                phase = (p.get("status") or {}).get("phase") or "Pending"
                phases[phase] = phases.get(phase, 0) + 1
            for phase in ("Pending", "Running", "Succeeded", "Failed", "Unknown"):
                POD_COUNT.labels(phase).set(phases.get(phase, 0))
            await asyncio.sleep(15)

    svc.task("node-lifecycle", lifecycle)
    svc.task("pod-count", count_pods)
    return svc


def _authority(svc: Service[Ctx], settings: Settings, store: ObjectStore) -> Authority | None:
    cfg = settings.cloudhub
    if not cfg.pki_dir:
        return None
    sysbus = None
    if cfg.system_creds_file:
        sysbus = Bus(
            settings.nats.servers(),
            name="cloudhub-system",
            request_timeout=settings.nats.request_timeout,
            auth=BusAuth(creds_file=cfg.system_creds_file, ca_file=settings.nats.ca_file),
        )
    ident = IdentitySettings(
        link_lifetime=cfg.link_lifetime,
        renew_window=cfg.renew_window,
        leaf_urls=list(cfg.leaf_urls),
        apiserver_url=cfg.apiserver_url,
        cloud_domain=settings.cloud_domain,
        kv_replicas=cfg.kv_replicas,
    )
    return Authority(CloudPki(Path(cfg.pki_dir)), store, svc.bus, sysbus, ident)


def record_nodes(nodes: list[dict], now: dt.datetime) -> None:
    counts = {"Ready": 0, "NotReady": 0}
    for n in nodes:
        counts["Ready" if node_status(n).startswith("Ready") else "NotReady"] += 1
        cond = logic.ready_condition(n) or {}
        last = parse_time(cond.get("lastHeartbeatTime"))
        if last is not None:
            HEARTBEAT_AGE.labels(n["metadata"]["name"]).set((now - last).total_seconds())
    for status, c in counts.items():
        NODE_COUNT.labels(status).set(c)


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("cloudhub", settings)
    run(lambda: build(settings))
