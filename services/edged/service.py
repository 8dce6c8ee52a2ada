"""edged wiring: CRI client, pod manager, request/reply routes and supervised tasks.

Tasks:

* ``desired`` - mirrors the node's pods, ConfigMaps and Secrets from metamanager (a local
  listing, works offline, then its commit events; re-listed every ``resync_interval``
  and after a reconnect) and hands them to the pod manager after each batch of changes;
* ``runtime-monitor`` - asks containerd for its version every 2 s; on the way up imports
  the preload images and wakes every pod; on the way down records the error;
* ``housekeeping`` - the pod manager's tick (orphans, exits, back-offs, probes' effects);
* ``node-status`` - publishes the runtime facts and the ``ContainerRuntimeReady``
  condition into the outbox on every runtime change and every ``status_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from edgebus import names, topology
from edgebus.cri import CriClient, CriError
from edgebus.metaclient import MetaClient, Mirror
from edgebus.objects import CONFIGMAPS, PODS, SECRETS
from edgebus.runtime import Service, setup_logging
from services.edged import images, node
from services.edged.config import Settings
from services.edged.handlers import Ctx, build_router
from services.edged.manager import PodManager
from services.edged.publish import Publisher

log = logging.getLogger("edgebus.edged")


def host_ip(configured: str) -> str:
    if configured:
        return configured
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class Edged:
    def __init__(self, settings: Settings) -> None:
        assert settings.node
        self.settings = settings
        self.node = settings.node
        self.cfg = settings.edged
        self.svc: Service[Ctx] = Service("edged", settings, router=build_router(self.node))
        self.cri = CriClient(self.cfg.containerd, timeout=self.cfg.cri_timeout)
        ip = host_ip(self.cfg.internal_ip)
        self.publisher = Publisher(self.svc.bus, self.node)
        self.mgr = PodManager(node=self.node, settings=self.cfg, cri=self.cri, publisher=self.publisher, host_ip=ip)
        self.ctx = Ctx(node=self.node, settings=settings, bus=self.svc.bus, cri=self.cri, manager=self.mgr)
        self.svc.ctx = self.ctx
        self._runtime_changed = asyncio.Event()
        mc = MetaClient(self.svc.bus, self.node, timeout=5.0, source="edged")
        self.desired = Mirror(mc, (PODS.plural, CONFIGMAPS.plural, SECRETS.plural), resync=self.cfg.resync_interval)
        self.svc.bus.on_state(lambda up: self.desired.relist() if up else None)  # events may be lost while down
        self._transition = ""
        self.mgr.on_runtime_change.append(self._runtime_changed.set)
        self.svc.on_start(self._ensure_streams)
        self.svc.task("desired", self._desired)
        self.svc.task("runtime-monitor", self._monitor)
        self.svc.task("housekeeping", self.mgr.housekeeping)
        self.svc.task("node-status", self._node_status)
        self.svc.on_stop(self._close)
        self.svc.readiness_check("desired", lambda: self.mgr.loaded)

    async def _ensure_streams(self, s: Service[Ctx]) -> None:
        await topology.ensure_edge_streams(s.bus, self.node, self.settings.cloud_domain)

    async def _close(self, _: Service[Ctx]) -> None:
        # Containers keep running: stopping edged is not stopping the node's pods.
        await self.mgr.stop()
        await self.cri.close()

    # -- desired state ---------------------------------------------------------------------
    async def _desired(self) -> None:
        await self.desired.follow(lambda m: self.mgr.set_desired(m.values(PODS.plural), m.values(CONFIGMAPS.plural), m.values(SECRETS.plural)))

    # -- runtime ---------------------------------------------------------------------------
    async def _monitor(self) -> None:
        first = True
        while True:
            try:
                v = await self.cri.version(timeout=2.0)
                ok, err, version = True, "", f"{v.runtime_name}://{v.runtime_version}"
            except CriError as exc:
                ok, err, version = False, str(exc), ""
            if ok and not self.mgr.runtime_ok:
                if self.cfg.preload_images:
                    await images.preload(self.cri, self.cfg.containerd, self.cfg.preload_images)
                self.ctx.runtime_version = version
                self.mgr.runtime_ok = True
                log.info("container runtime %s is available at %s", version, self.cfg.containerd)
                self._runtime_changed.set()
                self.mgr.wake_all()
            elif not ok and (self.mgr.runtime_ok or first):
                self.mgr.runtime_ok = False
                self.mgr.runtime_error = err
                log.error("container runtime unavailable: %s", err)
                self._runtime_changed.set()
            first = False
            await asyncio.sleep(2.0 if ok else 1.0)

    async def _node_status(self) -> None:
        last_ok: bool | None = None
        while True:
            self._runtime_changed.clear()
            ok = self.mgr.runtime_ok
            if ok != last_ok:
                self._transition = node.now()
            status = node.node_status(
                runtime_ok=ok,
                runtime_version=self.ctx.runtime_version,
                runtime_error=self.mgr.runtime_error,
                endpoint=self.cfg.containerd,
                max_pods=self.cfg.max_pods,
                transition=self._transition,
            )
            if await self.publisher.node_status(status):
                last_ok = ok
            try:
                await asyncio.wait_for(self._runtime_changed.wait(), self.cfg.status_interval if last_ok == ok else 1.0)
            except TimeoutError:
                pass


def build(settings: Settings | None = None) -> Service[Ctx]:
    settings = settings or Settings()
    if not settings.node:
        raise SystemExit("edged needs EDGEBUS_NODE (the name of this edge node)")
    names.node_domain(settings.node)
    return Edged(settings).svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("edged", settings)
    run(lambda: build(settings))
