"""The pod manager: desired pods by UID (from metamanager), one worker per pod, orphans,
and the housekeeping tick (see :mod:`services.edged.pods` for what a worker does)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from edgebus import clock
from edgebus.cri import CriError, RuntimeUnavailable
from edgebus.objects import poddns

from edgebus.objects.refs import pod_references
from services.edged import spec as S
from services.edged import volumes
from services.edged.config import EdgedSettings
from services.edged.events import Events
from services.edged.images import ImageError, Images, WasmImages
from services.edged.pods import FULL_SYNC_SECONDS, PODS, PodWorker
from services.edged.publish import Publisher
from services.edged.runtime import Observed, RuntimeView, pod_labels_of
from services.edged.runtimes import Runtimes

log = logging.getLogger("edgebus.edged")


class PodManager:
    """Desired pods by UID, their workers, and the housekeeping tick; the host of its
    workers (:class:`~services.edged.workerhost.WorkerHost`)."""

    def __init__(
        self, *, node: str, settings: EdgedSettings, cri: Runtimes, publisher: Publisher, host_ip: str, probe_host: str = "127.0.0.1", events: Events | None = None
    ) -> None:
        self.node = node
        self.events = events
        self.settings = settings
        self.cri = cri
        self.publisher = publisher
        self.host_ip = host_ip
        self.probe_host = probe_host
        self.view = RuntimeView(cri, node)  # type: ignore[arg-type]  # Runtimes is shaped as CriClient
        self.images = Images(cri.cri, initial=settings.image_backoff_initial, cap=settings.backoff_max, pull_timeout=settings.pull_timeout)
        self.wasm_images = (
            WasmImages(cri.wasm, initial=settings.image_backoff_initial, cap=settings.backoff_max, pull_timeout=settings.pull_timeout)  # type: ignore[arg-type]
            if cri.wasm is not None
            else None
        )
        self.desired: dict[str, dict[str, Any]] = {}
        self.by_name: dict[tuple[str, str], str] = {}
        self.sources: dict[str, S.Sources] = {}
        self.workers: dict[str, PodWorker] = {}
        self.loaded = False
        self.runtime_ok = False
        self.runtime_error = "not checked yet"
        #: whether Wasm pods can run here (wasmtime installed, edged.wasm_enabled)
        self.wasm_ok = cri.wasm is not None
        self.on_runtime_change: list[Any] = []
        #: set when there is something for the housekeeping tick to look at (a new worker,
        #: the first listing, the runtime back): it then relists at once
        self.attention = asyncio.Event()

    def pod_dns(self, pod: dict[str, Any]) -> poddns.ResolvConf | None:
        """The pod's resolv.conf from its dnsPolicy/dnsConfig and the node's settings (None:
        the node's own file, which the runtime copies)."""
        st = self.settings
        try:
            with open(st.resolv_conf) as f:
                host = poddns.parse_resolv_conf(f.read())
        except OSError:
            host = poddns.ResolvConf()
        return poddns.resolv_conf(pod, cluster_dns=st.cluster_dns, cluster_domain=st.cluster_domain, host=host)

    # -- desired state ------------------------------------------------------------------
    def sources_for(self, namespace: str) -> S.Sources:
        return self.sources.get(namespace) or S.Sources()

    def set_desired(self, pods: list[dict[str, Any]], configmaps: list[dict[str, Any]], secrets: list[dict[str, Any]]) -> None:
        """Replace the desired state (a full listing from metamanager) and wake what changed."""
        new: dict[str, dict[str, Any]] = {}
        for p in pods:
            try:
                ref = S.pod_ref(p)
            except S.InvalidPod as exc:
                log.error("ignoring a pod in the local store: %s", exc)
                continue
            if (p.get("spec") or {}).get("nodeName") not in (None, "", self.node):
                continue
            new[ref.uid] = p
        sources: dict[str, S.Sources] = {}
        for cm in configmaps:
            md = cm.get("metadata") or {}
            sources.setdefault(md.get("namespace") or "default", S.Sources()).configmaps[str(md.get("name"))] = cm
        for s in secrets:
            md = s.get("metadata") or {}
            sources.setdefault(md.get("namespace") or "default", S.Sources()).secrets[str(md.get("name"))] = s
        changed_refs: set[tuple[str, str, str]] = set()
        for ns in set(sources) | set(self.sources):
            a, b = self.sources.get(ns) or S.Sources(), sources.get(ns) or S.Sources()
            for n in set(a.configmaps) | set(b.configmaps):
                if a.configmaps.get(n) != b.configmaps.get(n):
                    changed_refs.add((ns, "configmaps", n))
            for n in set(a.secrets) | set(b.secrets):
                if a.secrets.get(n) != b.secrets.get(n):
                    changed_refs.add((ns, "secrets", n))
        self.sources = sources
        old = self.desired
        self.desired = new
        self.by_name = {(S.pod_ref(p).namespace, S.pod_ref(p).name): uid for uid, p in new.items()}
        for uid, p in new.items():
            ns = S.pod_ref(p).namespace
            if uid not in old or S.without_status(old[uid]) != S.without_status(p) or uid not in self.workers:
                self.worker(uid).update(p)
            elif any((ns, r, n) in changed_refs for r, n in pod_references(p)):
                self.worker(uid).refresh(p, self.settings.source_refresh_delay)
        for uid in set(old) - set(new):
            w = self.workers.get(uid)
            if w is not None:
                w.update(None)
        if not self.loaded:
            self.attention.set()
        self.loaded = True
        PODS.set(len(new))

    def worker(self, uid: str) -> PodWorker:
        w = self.workers.get(uid)
        if w is None or w.done:
            w = PodWorker(self, uid)
            w.pod = self.desired.get(uid)
            self.workers[uid] = w
            self.attention.set()
        return w

    # -- runtime ------------------------------------------------------------------------
    def handler_of(self, pod: dict[str, Any] | None) -> str | None:
        return S.runtime_handler(pod, self.settings.wasm_runtime_classes) if pod is not None else None

    def runtime_ready(self, pod: dict[str, Any] | None) -> bool:
        """Whether the runtime of ``pod`` answers (a pod no longer desired: either does)."""
        if pod is None:
            return self.runtime_ok or self.wasm_ok
        return self.wasm_ok if self.handler_of(pod) == "wasm" else self.runtime_ok

    async def observe(self, uid: str) -> Observed:
        return await self.view.observe(uid)

    def forget_container(self, container_id: str) -> None:
        self.view.forget(container_id)

    def pod_event(self, pod: dict[str, Any], type_: str, reason: str, message: str, container: str = "") -> None:
        if self.events is not None:
            self.events.pod(pod, type_, reason, message, container)

    async def publish_status(self, ref: S.PodRef, status: dict[str, Any], *, deleted: bool = False) -> bool:
        return await self.publisher.pod(ref.namespace, ref.name, ref.uid, status, deleted=deleted)

    def images_for(self, pod: dict[str, Any]) -> Images:
        if self.handler_of(pod) == "wasm":
            if self.wasm_images is None:
                raise ImageError("RuntimeClassNotSupported", "this node does not run Wasm pods (wasmtime is not installed, or edged.wasm_enabled is false)")
            return self.wasm_images
        return self.images

    def runtime_lost(self, exc: Exception) -> None:
        if self.runtime_ok:
            log.error("container runtime lost: %s", exc)
            self.runtime_ok = False
            self.runtime_error = str(exc)
            for cb in self.on_runtime_change:
                cb()

    async def _tick(self) -> None:
        """``sync_interval`` while there are pods; with none, until one appears (or the first
        listing, or the runtime comes back), at most ``idle_sync_interval``: an idle node does
        not relist its runtime every second to find nothing."""
        if self.workers:
            await asyncio.sleep(self.settings.sync_interval)
            return
        await clock.wait_set(self.attention, self.settings.idle_sync_interval)
        # a burst (the first listing's pods) is one relist
        await asyncio.sleep(min(self.settings.sync_interval, 0.05))

    async def housekeeping(self) -> None:
        """Every tick (:meth:`_tick`): find orphans, wake every worker, drop finished ones."""
        last_dirs = 0.0
        while True:
            await self._tick()
            self.attention.clear()
            if not (self.runtime_ok or self.wasm_ok) or not self.loaded:

                continue
            try:
                boxes = await self.cri.list_pod_sandbox({S.LABEL_NODE: self.node})
                live = await self.cri.list_containers({S.LABEL_NODE: self.node})
            except RuntimeUnavailable as exc:
                self.runtime_lost(exc)
                continue
            except CriError as exc:
                log.warning("housekeeping: %s", exc)
                continue
            self.view.prune({c.id for c in live})
            seen: dict[str, list[tuple[str, int]]] = {}
            for b in boxes:
                seen.setdefault(pod_labels_of(b)[2], []).append((b.id, int(b.state)))
            for c in live:
                seen.setdefault(c.labels.get(S.LABEL_POD_UID, ""), []).append((c.id, int(c.state)))
            seen.pop("", None)
            for uid in set(seen) - set(self.desired):
                self.worker(uid)
            now = time.monotonic()
            for uid, w in list(self.workers.items()):
                if w.done and w.task.done():
                    del self.workers[uid]
                    continue
                if w.done:
                    continue
                fp = tuple(sorted(seen.get(uid, ())))
                # wake a pod only when the runtime changed under it, when it waits for a
                # timer (back-off), or every resync period: 20 steady pods cost 2 CRI calls
                if fp != w.seen or w.needs_tick or now - w.last_sync > FULL_SYNC_SECONDS:
                    w.seen = fp
                    w.wake()
            if time.monotonic() - last_dirs > 30:
                last_dirs = time.monotonic()
                self._remove_stray_dirs(boxes)

    def _remove_stray_dirs(self, boxes: list[Any]) -> None:
        """Pod directories of pods neither desired nor in the runtime (e.g. edged was
        killed between removing a pod and its directory)."""
        keep = {S.pod_ref(p).dir_name for p in self.desired.values()}
        keep |= {f"{ns}_{n}_{u}" for ns, n, u in (pod_labels_of(b) for b in boxes)}
        for d in volumes.pod_dirs(self.settings.data_dir):
            if d not in keep:
                volumes.remove_pod_dir(self.settings.data_dir, d)

    def wake_all(self) -> None:
        for w in self.workers.values():
            w.wake()

    def find(self, namespace: str, name: str) -> str | None:
        return self.by_name.get((namespace, name))

    async def stop(self) -> None:
        tasks = [w.task for w in self.workers.values()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
