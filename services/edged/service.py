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
import importlib.util
import logging
import socket
import time
from pathlib import Path
from typing import Any

from edgebus import clock, names, topology
from edgebus.cri import CriClient, CriError, api
from edgebus.metaclient import MetaClient, Mirror
from edgebus.objects import CONFIGMAPS, PODS, SECRETS
from edgebus.runtime import Service, setup_logging
from edgebus.wasm.runtime import WasmRuntime
from services.edged import images, metrics, node
from services.edged import spec as S
from services.edged.config import Settings
from services.edged.events import Events
from services.edged.handlers import Ctx, build_router
from services.edged.manager import PodManager
from services.edged.publish import Publisher
from services.edged.runtimes import Runtimes

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
        wasm = None
        if self.cfg.wasm_enabled and importlib.util.find_spec("wasmtime") is not None:
            wasm = WasmRuntime(Path(self.cfg.data_dir) / "wasm", cpu_burst_seconds=self.cfg.wasm_cpu_burst_seconds)
        self.cri = Runtimes(CriClient(self.cfg.containerd, timeout=self.cfg.cri_timeout), wasm)
        ip = host_ip(self.cfg.internal_ip)
        self.publisher = Publisher(self.svc.bus, self.node)
        self.events = Events(self.svc.bus, self.node)
        self.mgr = PodManager(node=self.node, settings=self.cfg, cri=self.cri, publisher=self.publisher, host_ip=ip, events=self.events)
        self.ctx = Ctx(node=self.node, settings=settings, bus=self.svc.bus, cri=self.cri, manager=self.mgr)  # type: ignore[arg-type]  # Runtimes is shaped as CriClient
        self.svc.ctx = self.ctx
        self._runtime_changed = asyncio.Event()
        mc = MetaClient(self.svc.bus, self.node, timeout=5.0, source="edged")
        self.desired = Mirror(mc, (PODS.plural, CONFIGMAPS.plural, SECRETS.plural), resync=self.cfg.resync_interval)
        self.svc.bus.on_state(lambda up: self.desired.relist() if up else None)  # events may be lost while down
        self._transition = ""
        self._wasm_archives: set[str] = set()
        self._runtime_noted: bool | None = None
        self._recheck = asyncio.Event()  # a CRI call failed: check the runtime now
        self.mgr.on_runtime_change.append(self._runtime_changed.set)
        self.mgr.on_runtime_change.append(self._recheck.set)
        self.svc.on_start(self._ensure_streams)
        self.svc.task("events", self.events.run)
        self.svc.task("desired", self._desired)
        self.svc.task("runtime-monitor", self._monitor)
        self.svc.task("housekeeping", self.mgr.housekeeping)
        self.svc.task("node-status", self._node_status)
        self.svc.task("metrics", self._metrics)
        self.svc.on_stop(self._close)
        self.svc.readiness_check("desired", lambda: self.mgr.loaded)

    async def _ensure_streams(self, s: Service[Ctx]) -> None:
        await topology.ensure_edge_streams(s.bus, self.node, self.settings.cloud_domain)
        self.events.started(self.cfg.data_dir)

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
            self.cri.cri_ok = ok
            if first and self.cri.wasm is not None:
                self._wasm_archives = await asyncio.to_thread(self.wasm_preload)
                self.mgr.wake_all()
            if ok and not self.mgr.runtime_ok:
                archives = [a for a in self.cfg.preload_images if a not in self._wasm_archives]
                if archives:
                    await images.preload(self.cri.cri, self.cfg.containerd, archives)
                self.ctx.runtime_version = version
                self.mgr.runtime_ok = True
                log.info("container runtime %s is available at %s", version, self.cfg.containerd)
                self._runtime_changed.set()
                self.mgr.wake_all()
                self.mgr.attention.set()
            if not ok and (self.mgr.runtime_ok or first):

                self.mgr.runtime_ok = False
                self.mgr.runtime_error = err
                log.error("container runtime unavailable: %s", err)
                self._runtime_changed.set()
            first = False
            if ok:
                await self._runtime_quiet()
            else:
                await asyncio.sleep(1.0)

    async def _runtime_quiet(self) -> None:
        """Wait while the runtime is fine: until its connection changes state (containerd
        stopped: noticed at once), a CRI call fails, or ``runtime_check_interval`` passes."""
        self._recheck.clear()
        recheck = asyncio.ensure_future(self._recheck.wait())
        changed = asyncio.ensure_future(self.cri.cri.connection_changed(self.cfg.runtime_check_interval))
        try:
            await asyncio.wait({recheck, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (recheck, changed):
                t.cancel()

    async def _node_status(self) -> None:
        last_ok: bool | None = None
        while True:
            self._runtime_changed.clear()
            ok = self.mgr.runtime_ok
            if ok != last_ok:
                self._transition = node.now()
            if ok != self._runtime_noted and (self._runtime_noted is not None or ok):
                self.events.runtime(ok)
            self._runtime_noted = ok
            status = node.node_status(
                runtime_ok=ok,
                runtime_version=self.ctx.runtime_version,
                runtime_error=self.mgr.runtime_error,
                endpoint=self.cfg.containerd,
                max_pods=self.cfg.max_pods,
                transition=self._transition,
                wasm=self.wasm_version,
            )
            if await self.publisher.node_status(status):
                last_ok = ok
            await clock.wait_set(self._runtime_changed, self.cfg.status_interval if last_ok == ok else 1.0)


    @property
    def wasm_version(self) -> str:
        if self.cri.wasm is None:
            return ""
        import importlib.metadata

        return f"wasmtime://{importlib.metadata.version('wasmtime')}"

    def wasm_preload(self) -> set[str]:
        """Wasm artifacts among ``preload_images`` go into the module store (a node without
        containerd preloads its modules too); returns those archives (not containerd's)."""
        assert self.cri.wasm is not None
        done = set()
        for a in self.cfg.preload_images:
            try:
                names = self.cri.wasm.import_archive(a)
                log.info("imported Wasm modules %s from %s", ", ".join(names), a)
                done.add(a)
            except ValueError:
                continue  # a container image: containerd's
            except OSError as exc:
                log.error("importing %s failed: %s", a, exc)
        return done

    async def _metrics(self) -> None:
        """Resource usage into the outbox every ``metrics_interval`` (``kubectl top``)."""
        rates = metrics.Rates()
        pids: dict[str, int] = {}
        while True:
            await asyncio.sleep(self.cfg.metrics_interval)
            if not self.mgr.runtime_ok:
                continue
            try:
                # Wasm workers run in edged's own cgroup: no figures of their own (docs/wasm.md)
                running = [c for c in await self.cri.list_containers({S.LABEL_NODE: self.node}) if c.state == api.CONTAINER_RUNNING and not WasmRuntime.owns(c.id)]
            except CriError as exc:
                log.debug("metrics: cannot list containers: %s", exc)
                continue
            now = time.monotonic()
            pods: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for c in running:
                if c.id not in pids:
                    try:
                        pids[c.id] = await self.cri.container_pid(c.id)
                    except CriError:
                        continue
                usage = await asyncio.to_thread(metrics.container_usage, pids[c.id]) if pids[c.id] else None
                if usage is None:
                    continue
                cpu = rates.rate(c.id, now, usage[0])
                key = (c.labels.get(S.LABEL_POD_NAMESPACE, ""), c.labels.get(S.LABEL_POD_NAME, ""))
                if cpu is not None and all(key):
                    pods.setdefault(key, []).append({"name": c.labels.get(S.LABEL_CONTAINER, c.metadata.name), "cpu": cpu, "memory": usage[1]})
            live = {c.id for c in running}
            for cid in list(pids):
                if cid not in live:
                    del pids[cid]
            rates.forget_except(live | {"node"})
            node_cpu, node_mem = await asyncio.to_thread(metrics.node_usage)
            body = metrics.report((rates.rate("node", now, node_cpu), node_mem), pods, self.cfg.metrics_interval)
            await self.publisher.metrics(body)


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
