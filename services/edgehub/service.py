"""edgehub: owns the node's link to the cloud.

The wiring — which tasks and routes run; each lives in the module named for what it does:

* ``link-monitor`` (:mod:`services.edgehub.link`) watches the link through the node's own
  server and wakes the forwarder and the downstream on every down->up transition.
* ``forwarder`` and ``backlog`` (:mod:`services.edgehub.forwarder`) move the outbox
  (``EDGEBUS_EDGE_UP``) to the cloud (``EDGEBUS_UP``) exactly once, and report what it still
  holds.
* ``downstream`` (:mod:`services.edgehub.downstream`) pulls the node's desired state from its
  durable consumer on the cloud's ``EDGEBUS_DOWN`` into ``EDGEBUS_EDGE_DOWN``.
* ``node-status`` (:mod:`services.edgehub.status`) publishes into the outbox, so it is kept
  while offline; ``heartbeat`` sends straight to the cloud's ``EDGEBUS_UP`` while the link
  is up (a heartbeat kept offline would count for nothing).
* ``credentials`` (:mod:`services.edgehub.credentials`) renews the node's link certificate.
* the ``state`` reply (:mod:`services.edgehub.handlers`).

They share one :class:`~services.edgehub.context.Ctx`. At start edgehub ensures the edge
streams (it owns the outbox and its limits); it is ready once it knows the outbox's epoch.
"""

from __future__ import annotations

from pathlib import Path

from edgebus import names, topology
from edgebus.bus import Bus, Router, stream_state
from edgebus.identity.node import NodeIdentity
from edgebus.runtime import Service, setup_logging
from services.edgehub import handlers
from services.edgehub.config import Settings
from services.edgehub.context import Ctx
from services.edgehub.credentials import Credentials
from services.edgehub.downstream import Downstream
from services.edgehub.forwarder import Forwarder
from services.edgehub.link import LinkMonitor
from services.edgehub.status import NodeStatus


class EdgeHub:
    def __init__(self, settings: Settings) -> None:
        assert settings.node
        self.settings = settings
        self.node = settings.node
        self.cfg = settings.edgehub
        self.router: Router[Ctx] = Router("edgehub")
        self.svc: Service[Ctx] = Service("edgehub", settings, router=self.router)
        self.ctx = Ctx(node=self.node, settings=settings, bus=self.svc.bus)
        self.svc.ctx = self.ctx
        self.status = NodeStatus(self.ctx)
        self.link = LinkMonitor(self.ctx, on_join=self.status.publish)
        self.forwarder = Forwarder(self.ctx, stopping=self.svc.stopping)
        self.downstream = self.ctx.downstream = Downstream(self.node, self.svc.bus, self.ctx.link, cloud_domain=settings.cloud_domain, expires=self.cfg.down_pull_expires)
        self.router.reply(names.edgehub_subject(self.node, "state"), name="state")(handlers.state)
        self.svc.on_start(self._ensure_streams)
        self.svc.task("link-monitor", self.link.run)
        self.svc.task("forwarder", self.forwarder.run)
        self.svc.task("downstream", self.downstream.run)
        self.svc.task("heartbeat", self.status.heartbeats)
        self.svc.task("node-status", self.status.run)
        self.svc.task("backlog", self.forwarder.backlog_reports)
        self.svc.on_stop(self.forwarder.stop_backlog_report)
        if self.cfg.identity_dir:
            self.ctx.credentials = Credentials(
                self.node, self.bus, NodeIdentity(Path(self.cfg.identity_dir)), system_nkey_file=self.cfg.system_nkey_file, servers=settings.nats.servers(), link_up=lambda: self.ctx.link.up
            )
            self.svc.task("credentials", self.ctx.credentials.run)
        self.svc.readiness_check("streams", lambda: bool(self.ctx.epoch))

    @property
    def bus(self) -> Bus:
        return self.svc.bus

    async def _ensure_streams(self, _: Service[Ctx]) -> None:
        outbox = topology.edge_up(self.node, max_bytes=self.cfg.outbox_max_bytes, max_age=self.cfg.outbox_max_age)
        await topology.ensure_edge_streams(self.bus, self.node, self.settings.cloud_domain, outbox=outbox)  # edgehub owns the outbox
        self.ctx.epoch = (await stream_state(self.bus, names.STREAM_EDGE_UP)).created


def build(settings: Settings | None = None) -> Service[Ctx]:
    settings = settings or Settings()
    if not settings.node:
        raise SystemExit("edgehub needs EDGEBUS_NODE (the name of this edge node)")
    names.node_domain(settings.node)  # validates the name
    return EdgeHub(settings).svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("edgehub", settings)
    run(lambda: build(settings))


__all__ = ["EdgeHub", "build", "main"]
