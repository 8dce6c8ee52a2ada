"""The reconcile loop: desired pods (metamanager's store) vs what containerd runs.

Level-triggered, like the kubelet. One :class:`PodWorker` per pod UID, so a pod that takes
long (a grace period, an image pull) never holds up another; a worker syncs when woken:
by a change of its pod (or of a ConfigMap/Secret it uses), by a probe result, and by the
housekeeping tick every ``sync_interval`` (which is how exits are noticed and back-offs
expire). A sync reads the pod's sandboxes and containers from the runtime (by label), so
it needs no memory of earlier syncs: after ``kill -9`` a new edged adopts what is there.
The runtime refuses a second sandbox or container with the same name and attempt, so a
sync interrupted half-way never yields a duplicate.

* a desired pod: sandbox (host network), then each container in order: image per pull
  policy, environment and volumes, create, start; restarts per ``restartPolicy`` with
  back-off; liveness failures and spec changes replace the container;
* a pod being deleted (``deletionTimestamp``): stop every container (SIGTERM, SIGKILL after
  the grace period), stop and remove the sandbox, remove the pod's directory, then confirm
  through the outbox (``deleted: true``) so the cloud removes the pod;
* a pod in the runtime but not desired (force-deleted, or deleted while edged was down):
  the same cleanup, without a report.

Orphans are only removed once the desired pods have been read from metamanager at least
once, so a restart of edged never kills pods it has not yet looked up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from edgebus.cri import CriError, CriNotFound, RuntimeUnavailable
from services.edged import spec as S
from services.edged import volumes
from services.edged.images import ImageError
from services.edged.probes import Prober
from services.edged.runtime import Observed
from services.edged.status import CREATED, EXITED, RUNNING, UNKNOWN, Waiting, container_status, pod_status, restart_at, restart_wanted, rfc3339

if TYPE_CHECKING:
    from services.edged.manager import PodManager

log = logging.getLogger("edgebus.edged")

SYNCS = Counter("edgebus_edged_pod_syncs_total", "Pod syncs", ["outcome"])
STARTS = Counter("edgebus_edged_container_starts_total", "Containers started (restarts included)")
PODS = Gauge("edgebus_edged_pods", "Pods edged manages (desired)")

#: a pod is synced at least this often even when nothing changed (probes' effects, drift)
FULL_SYNC_SECONDS = 10.0


class PodWorker:
    def __init__(self, mgr: PodManager, uid: str) -> None:
        self.mgr = mgr
        self.uid = uid
        self.pod: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._refresh: asyncio.TimerHandle | None = None
        self.prober = Prober(mgr.cri, self.wake, host=mgr.probe_host)
        self.published: dict[str, Any] | None = None
        self.confirmed = False
        self.done = False
        self.force_restart: set[str] = set()
        self.invalid_logged = False
        #: the runtime's view of this pod at the last housekeeping wake, when it last synced,
        #: and whether it waits for time to pass (back-off) and so needs every tick
        self.seen: tuple[tuple[str, int], ...] = ()
        self.last_sync = 0.0
        self.needs_tick = True
        self.task = asyncio.create_task(self._run(), name=f"pod:{uid[:8]}")

    def update(self, pod: dict[str, Any] | None) -> None:
        self.pod = pod
        self.wake()

    def refresh(self, pod: dict[str, Any], delay: float) -> None:
        """A ConfigMap or Secret the pod uses changed: sync within ``delay`` (one pass for
        a burst of changes; a spec change or any other wake syncs at once anyway)."""
        self.pod = pod
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().call_later(delay, self._refresh_due)

    def _refresh_due(self) -> None:
        self._refresh = None
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        try:
            while not self.done:
                await self._wake.wait()
                self._wake.clear()
                if not self.mgr.runtime_ok:
                    continue
                try:
                    self.needs_tick = False
                    await self.sync()
                    self.last_sync = time.monotonic()
                    SYNCS.labels("ok").inc()
                except RuntimeUnavailable as exc:
                    SYNCS.labels("runtime-unavailable").inc()
                    self.needs_tick = True
                    self.mgr.runtime_lost(exc)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    SYNCS.labels("error").inc()
                    self.needs_tick = True
                    log.exception("sync of pod %s failed", self.uid)
                    await asyncio.sleep(1.0)
        finally:
            if self._refresh is not None:
                self._refresh.cancel()
            await self.prober.close()

    # -- sync -----------------------------------------------------------------------
    async def sync(self) -> None:
        pod = self.pod
        obs = await self.mgr.view.observe(self.uid)
        if pod is None:
            if not obs.empty:
                log.info("removing pod %s from the runtime: it is no longer desired", self.uid)
                await self.kill(obs, self._grace_of(obs))
            self.done = True
            return
        try:
            ref = S.pod_ref(pod)
            specs = S.containers(pod)
        except S.InvalidPod as exc:
            if not self.invalid_logged:
                log.error("pod %s cannot run: %s", self.uid, exc)
                self.invalid_logged = True
            return
        if S.terminating(pod):
            await self.terminate(pod, ref, specs, obs)
            return
        await self.run_pod(pod, ref, specs, obs)

    def _grace_of(self, obs: Observed) -> int:
        for s in obs.sandboxes:
            try:
                return int(s.annotations.get(S.ANN_GRACE, ""))
            except ValueError:
                continue
        return self.mgr.settings.default_grace_period

    async def kill(self, obs: Observed, grace: int) -> None:
        """Stop every container (grace period), then the sandboxes; remove all and the
        pod's directory."""
        cri = self.mgr.cri
        running = [c for c in obs.containers if c.state in (RUNNING, UNKNOWN)]
        await asyncio.gather(*(self._stop(c.id, grace) for c in running))
        for sb in obs.sandboxes:
            await _ignore_missing(cri.stop_pod_sandbox(sb.id))
        for c in obs.containers:
            await _ignore_missing(cri.remove_container(c.id))
            self.mgr.view.forget(c.id)
        for sb in obs.sandboxes:
            await _ignore_missing(cri.remove_pod_sandbox(sb.id))
        for d in obs.dir_names():
            volumes.remove_pod_dir(self.mgr.settings.data_dir, d)
        self.prober.sync([])

    async def _stop(self, cid: str, grace: int) -> None:
        try:
            await self.mgr.cri.stop_container(cid, grace)
        except CriNotFound:
            pass

    async def terminate(self, pod: dict[str, Any], ref: S.PodRef, specs: list[dict[str, Any]], obs: Observed) -> None:
        if obs.empty:
            volumes.remove_pod_dir(self.mgr.settings.data_dir, ref.dir_name)
            if not self.confirmed:
                final = self.status(pod, specs, obs, {}, policy="Never")
                self.confirmed = await self.mgr.publisher.pod(ref.namespace, ref.name, ref.uid, final, deleted=True)
            return
        grace = S.grace_seconds(pod, self.mgr.settings.default_grace_period)
        log.info("terminating pod %s (grace period %ds)", ref, grace)
        running = [c for c in obs.containers if c.state in (RUNNING, UNKNOWN)]
        await asyncio.gather(*(self._stop(c.id, grace) for c in running))
        after = await self.mgr.view.observe(self.uid)
        final = self.status(pod, specs, after, {}, policy="Never")
        await self.kill(after, 0)
        volumes.remove_pod_dir(self.mgr.settings.data_dir, ref.dir_name)
        self.confirmed = await self.mgr.publisher.pod(ref.namespace, ref.name, ref.uid, final, deleted=True)
        log.info("pod %s terminated and removed", ref)

    async def run_pod(self, pod: dict[str, Any], ref: S.PodRef, specs: list[dict[str, Any]], obs: Observed) -> None:
        st = self.mgr.settings
        cri = self.mgr.cri
        policy = S.restart_policy(pod)
        grace = S.grace_seconds(pod, st.default_grace_period)
        names = [str(c["name"]) for c in specs]
        waiting: dict[str, Waiting] = {}

        # containers whose name left the spec
        for c in obs.containers:
            if c.name not in names:
                if c.state == RUNNING:
                    await self._stop(c.id, grace)
                await _ignore_missing(cri.remove_container(c.id))
                self.mgr.view.forget(c.id)

        finished = all((lc := obs.latest(n)) is not None and lc.state == EXITED and n not in self.force_restart and not restart_wanted(policy, lc) for n in names)
        sb = obs.ready_sandbox()
        if finished:
            if sb is not None:
                await _ignore_missing(cri.stop_pod_sandbox(sb.id))
            self.prober.sync([])
            await self.report(pod, ref, specs, obs, waiting, policy)
            return

        vol_paths: dict[str, str] = {}
        ro: set[str] = set()
        vol_error: str | None = None
        try:
            vol_paths, ro = volumes.prepare(st.data_dir, pod, ref, self.mgr.sources_for(ref.namespace), protected=st.protected_dirs())
        except S.ConfigError as exc:
            vol_error = str(exc)
        except OSError as exc:
            vol_error = f"preparing volumes: {exc}"

        if sb is None:
            attempt = max((s.metadata.attempt for s in obs.sandboxes), default=-1) + 1
            for c in obs.containers:  # a sandbox died under running containers
                if c.state == RUNNING:
                    await self._stop(c.id, 0)
            logs = volumes.log_dir(st.data_dir, ref)
            logs.mkdir(parents=True, exist_ok=True)
            cfg = S.sandbox_config(pod, self.mgr.node, attempt, str(logs), grace)
            try:
                sb_id = await cri.run_pod_sandbox(cfg)
            except RuntimeUnavailable:
                raise
            except CriError as exc:
                msg = f"failed to create the pod sandbox: {exc}"
                log.warning("pod %s: %s", ref, msg)
                for n in names:
                    waiting[n] = Waiting("ContainerCreating", msg)
                await self.report(pod, ref, specs, obs, waiting, policy)
                return
            log.info("pod %s: sandbox %s (attempt %d) is running", ref, sb_id[:12], attempt)
        else:
            sb_id = sb.id
            cfg = S.sandbox_config(pod, self.mgr.node, int(sb.metadata.attempt), str(volumes.log_dir(st.data_dir, ref)), grace)

        now = time.time()
        for spec in specs:
            name = str(spec["name"])
            cur = obs.latest(name, sb_id)
            if cur is not None and cur.state == RUNNING:
                why = None
                if cur.hash and cur.hash != S.container_hash(spec):
                    why = "its spec changed"
                    self.force_restart.add(name)
                elif (failure := self.prober.liveness_failure(cur.id)) is not None:
                    why = failure
                if why is None:
                    continue
                log.info("pod %s: restarting container %s: %s", ref, name, why)
                await self._stop(cur.id, grace)
                self.wake()
                continue
            if cur is not None and cur.state == CREATED:
                try:
                    await cri.start_container(cur.id)
                    STARTS.inc()
                except CriError as exc:
                    if isinstance(exc, RuntimeUnavailable):
                        raise
                    waiting[name] = Waiting("RunContainerError", str(exc))
                continue
            last = obs.latest(name)
            if last is not None and last.state == RUNNING and last.sandbox_id != sb_id:
                await self._stop(last.id, 0)
                self.wake()
                continue
            if last is not None and name not in self.force_restart:
                if not restart_wanted(policy, last):
                    continue
                at = restart_at(last, initial=st.backoff_initial, cap=st.backoff_max, reset=st.backoff_reset)
                if now < at:
                    delay = at - last.finished_at / 1e9
                    waiting[name] = Waiting("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container={name} pod={ref.name}_{ref.namespace}({ref.uid})")
                    continue
            try:
                await self.mgr.images.ensure(spec)
            except ImageError as exc:
                waiting[name] = Waiting(exc.reason, exc.message)
                continue
            try:
                if vol_error and spec.get("volumeMounts"):
                    raise S.ConfigError(vol_error)
                env = S.resolve_env(pod, spec, self.mgr.sources_for(ref.namespace), node=self.mgr.node, host_ip=self.mgr.host_ip, pod_ip=self.mgr.host_ip)
                mounts = S.mounts(spec, vol_paths, ro)
                attempt = last.attempt + 1 if last is not None else 0
                ccfg = S.container_config(pod, spec, node=self.mgr.node, attempt=attempt, env=env, mounts=mounts, grace=grace)
            except S.ConfigError as exc:
                waiting[name] = Waiting(exc.reason, str(exc))
                continue
            try:
                cid = await cri.create_container(sb_id, ccfg, cfg)
            except RuntimeUnavailable:
                raise
            except CriError as exc:
                if "reserved" in str(exc):
                    self.wake()  # created by a sync that was interrupted: adopt it next time
                else:
                    waiting[name] = Waiting("CreateContainerError", str(exc))
                continue
            try:
                await cri.start_container(cid)
            except RuntimeUnavailable:
                raise
            except CriError as exc:
                waiting[name] = Waiting("RunContainerError", str(exc))
                continue
            STARTS.inc()
            self.force_restart.discard(name)
            log.info("pod %s: container %s started (attempt %d)", ref, name, attempt)

        obs = await self.mgr.view.observe(self.uid)
        if waiting:
            self.needs_tick = True  # back-offs expire, missing things appear: look again
        await self.collect_garbage(obs, names, sb_id)
        self.prober.sync([(c.id, sp) for sp in specs if (c := obs.latest(str(sp["name"]), sb_id)) is not None and c.state == RUNNING])
        await self.report(pod, ref, specs, obs, waiting, policy)

    async def collect_garbage(self, obs: Observed, names: list[str], sb_id: str) -> None:
        """Keep the latest two containers per name (status and ``logs --previous``); remove
        older sandboxes once every container runs in the current one."""
        cri = self.mgr.cri
        for n in names:
            for c in obs.by_name(n)[2:]:
                if c.state != RUNNING:
                    await _ignore_missing(cri.remove_container(c.id))
                    self.mgr.view.forget(c.id)
        if all(obs.latest(n, sb_id) is not None for n in names):
            for box in obs.sandboxes:
                if box.id == sb_id:
                    continue
                for c in obs.containers:
                    if c.sandbox_id == box.id:
                        if c.state == RUNNING:
                            await self._stop(c.id, 0)
                        await _ignore_missing(cri.remove_container(c.id))
                        self.mgr.view.forget(c.id)
                await _ignore_missing(cri.stop_pod_sandbox(box.id))
                await _ignore_missing(cri.remove_pod_sandbox(box.id))

    # -- status ---------------------------------------------------------------------
    def status(self, pod: dict[str, Any], specs: list[dict[str, Any]], obs: Observed, waiting: dict[str, Waiting], *, policy: str) -> dict[str, Any]:
        statuses = []
        for spec in specs:
            name = str(spec["name"])
            latest, previous = obs.latest(name), obs.previous(name)
            running = latest is not None and latest.state == RUNNING
            will_restart = latest is not None and latest.state == EXITED and (name in self.force_restart or restart_wanted(policy, latest))
            if S.terminating(pod):
                will_restart = False
            statuses.append(
                container_status(
                    spec,
                    latest,
                    previous,
                    waiting.get(name),
                    ready=running and latest is not None and self.prober.ready(latest.id),
                    started=running and latest is not None and self.prober.started(latest.id),
                    will_restart=will_restart,
                )
            )
        start = obs.start_ns()
        prev_start = (self.published or {}).get("startTime")
        return pod_status(
            pod,
            statuses,
            policy=policy,
            host_ip=self.mgr.host_ip,
            pod_ip=self.mgr.host_ip,
            start_time=prev_start or rfc3339(start) or rfc3339(time.time_ns()),
            previous=self.published,
            now=rfc3339(time.time_ns()) or "",
        )

    async def report(self, pod: dict[str, Any], ref: S.PodRef, specs: list[dict[str, Any]], obs: Observed, waiting: dict[str, Waiting], policy: str) -> None:
        status = self.status(pod, specs, obs, waiting, policy=policy)
        if status != self.published and await self.mgr.publisher.pod(ref.namespace, ref.name, ref.uid, status):
            self.published = status


def _spec_part(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod without its status (metamanager overlays the status this node reported)."""
    return {k: v for k, v in pod.items() if k != "status"}


async def _ignore_missing(aw: Any) -> None:
    try:
        await aw
    except CriNotFound:
        pass


__all__ = ["FULL_SYNC_SECONDS", "PodWorker"]
