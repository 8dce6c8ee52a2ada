"""cloudhub wiring: join, upstream ingestion, node lifecycle, node identity.

* routes ``join`` (request/reply) and ``ingest`` (the shared durable consumer of
  ``EDGEBUS_UP``): every replica;
* task ``node-view``: every replica follows the Node objects (heartbeats of nodes recorded
  recently cost ingestion no I/O);
* lease ``cloudhub-lifecycle``: one replica at a time judges liveness and acts on
  unreachable nodes (:mod:`services.cloudhub.lifecycle`);
* lease ``cloudhub-identity`` (with a PKI): one replica at a time pushes the account's
  node revocations to the servers (:mod:`services.cloudhub.identity`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgebus import names, topology
from edgebus.bus import KV, Bus, BusAuth
from edgebus.events import EventRecorder
from edgebus.identity.cloud import CloudPki
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service, setup_logging
from services.cloudhub.config import Settings
from services.cloudhub.handlers import Ctx, router
from services.cloudhub.identity import Authority, IdentitySettings
from services.cloudhub.lifecycle import Lifecycle, NodeView

log = logging.getLogger("edgebus.cloudhub")

LEASE = "cloudhub-lifecycle"


def build(settings: Settings | None = None) -> Service[Ctx]:
    settings = settings or Settings()
    cfg = settings.cloudhub
    svc: Service[Ctx] = Service("cloudhub", settings, router=router)
    store = ObjectStore(svc.bus, replicas=cfg.kv_replicas, event_ttl=settings.events.ttl, service_cidr=settings.service_cidr)
    view = NodeView(store)
    lifecycle = Lifecycle(store, svc.bus, grace=cfg.node_grace_period, interval=cfg.lifecycle_interval, probe_timeout=cfg.probe_timeout)
    ctx = Ctx(
        settings=settings,
        store=store,
        authority=_authority(svc, settings, store),
        view=view,
        lifecycle=lifecycle,
        events=EventRecorder(store, "cloudhub"),
        metrics=KV(svc.bus, names.BUCKET_METRICS),
    )
    svc.ctx = ctx

    @svc.on_start
    async def ensure(s: Service[Ctx]) -> None:
        await store.ensure()
        assert ctx.metrics is not None
        await ctx.metrics.ensure(replicas=cfg.kv_replicas)
        up = topology.cloud_up(cfg.stream_replicas, max_age=cfg.up_max_age, duplicate_window=cfg.up_duplicate_window)
        await topology.ensure_cloud_streams(s.bus, replicas=cfg.stream_replicas, up=up)  # cloudhub owns EDGEBUS_UP
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

    svc.task("node-view", view.run)
    svc.lead(LEASE, lifecycle.run, ttl=cfg.lease_ttl, synced=lambda: lifecycle.synced)
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


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("cloudhub", settings)
    run(lambda: build(settings))
