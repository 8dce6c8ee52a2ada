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

import functools
import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from edgebus.cri import CriError, CriNotFound, RuntimeUnavailable
from edgebus.objects.resources import parse_time
from services.edged import logic as L
from services.edged import spec as S
from services.edged import volumes
from services.edged.images import ImageError
from services.edged.probes import Prober
from services.edged.runtime import Observed
from services.edged.status import CREATED, EXITED, RUNNING, UNKNOWN, CState, Waiting, container_status, init_progress, pod_status, restart_at, restart_wanted, rfc3339

if TYPE_CHECKING:
    from services.edged.workerhost import WorkerHost

log = logging.getLogger("edgebus.edged")

SYNCS = Counter("edgebus_edged_pod_syncs_total", "Pod syncs", ["outcome"])
STARTS = Counter("edgebus_edged_container_starts_total", "Containers started (restarts included)")
PODS = Gauge("edgebus_edged_pods", "Pods edged manages (desired)")

#: a pod is synced at least this often even when nothing changed (probes' effects, drift)
FULL_SYNC_SECONDS = 10.0


class PodWorker:
    """Syncs one pod (by UID) each time it is woken; what it uses of the node is its
    :class:`~services.edged.workerhost.WorkerHost` (the pod manager)."""

    def __init__(self, host: WorkerHost, uid: str) -> None:
        self.host = host
        self.uid = uid
        self.pod: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._refresh: asyncio.TimerHandle | None = None
        self.prober = Prober(host.cri, self.wake, host=host.probe_host, on_failure=self._probe_failed)  # type: ignore[arg-type]  # Runtimes is shaped as CriClient
        #: per container, the waiting condition last recorded as an event (recorded when it starts)
        self._noted: dict[str, tuple[str, str]] = {}
        self.published: dict[str, Any] | None = None
        self.confirmed = False
        self.done = False
        self.force_restart: set[str] = set()
        #: the pod ran longer than its activeDeadlineSeconds: stopped, Failed for good
        self.deadline_exceeded = False
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

    # -- events ---------------------------------------------------------------------
    def _event(self, type_: str, reason: str, message: str, container: str = "") -> None:
        if self.pod is not None:
            self.host.pod_event(self.pod, type_, reason, message, container)

    def _probe_failed(self, container: str, kind: str, message: str) -> None:
        self._event("Warning", "Unhealthy", f"{kind[:-5].capitalize()} probe failed: {message}", container)

    def _note_waiting(self, name: str, w: Waiting, key: str = "") -> None:
        """Record a waiting container's condition once, when it starts (not every sync)."""
        mark = (w.reason, key or w.message)
        if self._noted.get(name) == mark:
            return
        self._noted[name] = mark
        if w.reason == "CrashLoopBackOff":
            ref = S.pod_ref(self.pod) if self.pod is not None else None
            who = f"{ref.name}_{ref.namespace}({ref.uid})" if ref else ""
            self._event("Warning", "BackOff", f"Back-off restarting failed container {name} in pod {who}", name)
        elif w.reason in ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull"):
            if w.reason == "ErrImageNeverPull":
                self._event("Warning", "ErrImageNeverPull", w.message, name)
            self._event("Warning", "Failed", f"Error: {w.reason}", name)
        elif w.reason not in ("ContainerCreating",):
            self._event("Warning", "Failed", f"Error: {w.message or w.reason}", name)

    async def _run(self) -> None:
        try:
            while not self.done:
                await self._wake.wait()
                self._wake.clear()
                if not self.host.runtime_ready(self.pod):
                    continue
                try:
                    self.needs_tick = False
                    await self.sync()
                    self.last_sync = time.monotonic()
                    SYNCS.labels("ok").inc()
                except RuntimeUnavailable as exc:
                    SYNCS.labels("runtime-unavailable").inc()
                    self.needs_tick = True
                    self.host.runtime_lost(exc)
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
        obs = await self.host.observe(self.uid)
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
        return self.host.settings.default_grace_period

    async def kill(self, obs: Observed, grace: int) -> None:
        """Stop every container (grace period), then the sandboxes; remove all and the
        pod's directory."""
        cri = self.host.cri
        running = [c for c in obs.containers if c.state in (RUNNING, UNKNOWN)]
        await asyncio.gather(*(self._stop(c.id, grace) for c in running))
        for sb in obs.sandboxes:
            await _ignore_missing(cri.stop_pod_sandbox(sb.id))
        for c in obs.containers:
            await _ignore_missing(cri.remove_container(c.id))
            self.host.forget_container(c.id)
        for sb in obs.sandboxes:
            await _ignore_missing(cri.remove_pod_sandbox(sb.id))
        for d in obs.dir_names():
            volumes.remove_pod_dir(self.host.settings.data_dir, d)
        self.prober.sync([])

    async def _stop(self, cid: str, grace: int) -> None:
        try:
            await self.host.cri.stop_container(cid, grace)
        except CriNotFound:
            pass

    async def terminate(self, pod: dict[str, Any], ref: S.PodRef, specs: list[dict[str, Any]], obs: Observed) -> None:
        if obs.empty:
            volumes.remove_pod_dir(self.host.settings.data_dir, ref.dir_name)
            if not self.confirmed:
                final = self.status(pod, specs, obs, {}, policy="Never")
                self.confirmed = await self.host.publish_status(ref, final, deleted=True)
            return
        grace = S.grace_seconds(pod, self.host.settings.default_grace_period)
        log.info("terminating pod %s (grace period %ds)", ref, grace)
        running = [c for c in obs.containers if c.state in (RUNNING, UNKNOWN)]
        for c in running:
            self._event("Normal", "Killing", f"Stopping container {c.name}", c.name)
        await asyncio.gather(*(self._stop(c.id, grace) for c in running))
        after = await self.host.observe(self.uid)
        final = self.status(pod, specs, after, {}, policy="Never")
        await self.kill(after, 0)
        volumes.remove_pod_dir(self.host.settings.data_dir, ref.dir_name)
        self.confirmed = await self.host.publish_status(ref, final, deleted=True)
        log.info("pod %s terminated and removed", ref)

    async def run_pod(self, pod: dict[str, Any], ref: S.PodRef, specs: list[dict[str, Any]], obs: Observed) -> None:
        st = self.host.settings
        cri = self.host.cri
        policy = S.restart_policy(pod)
        grace = S.grace_seconds(pod, st.default_grace_period)
        names = [str(c["name"]) for c in specs]
        inits = S.init_containers(pod)
        init_names = [str(c["name"]) for c in inits]
        waiting: dict[str, Waiting] = {}

        # containers whose name left the spec
        for c in L.strays(obs, [*names, *init_names]):
            if c.state == RUNNING:
                await self._stop(c.id, grace)
            await _ignore_missing(cri.remove_container(c.id))
            self.host.forget_container(c.id)

        if self._past_deadline(pod, obs):
            running = [c for c in obs.containers if c.state in (RUNNING, UNKNOWN)]
            if running:
                self._event("Warning", "DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
            await asyncio.gather(*(self._stop(c.id, grace) for c in running))
            sb = obs.ready_sandbox()
            if sb is not None:
                await _ignore_missing(cri.stop_pod_sandbox(sb.id))
            self.prober.sync([])
            await self.report(pod, ref, specs, await self.host.observe(self.uid), waiting, policy)
            return

        finished = L.finished(obs, names, policy, self.force_restart)
        sb = obs.ready_sandbox()
        init_failed = init_progress([obs.latest(n, sb.id if sb else None) for n in init_names], policy) == "failed"
        if finished or init_failed:
            if sb is not None:
                await _ignore_missing(cri.stop_pod_sandbox(sb.id))
            self.prober.sync([])
            await self.report(pod, ref, specs, obs, waiting, policy)
            return

        vol_paths: dict[str, str] = {}
        ro: set[str] = set()
        vol_error: str | None = None
        try:
            vol_paths, ro = volumes.prepare(st.data_dir, pod, ref, self.host.sources_for(ref.namespace), protected=st.protected_dirs())
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
            cfg = S.sandbox_config(pod, self.host.node, attempt, str(logs), grace, self.host.pod_dns(pod), self.host.handler_of(pod))

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
            cfg = S.sandbox_config(pod, self.host.node, int(sb.metadata.attempt), str(volumes.log_dir(st.data_dir, ref)), grace, self.host.pod_dns(pod), self.host.handler_of(pod))


        now = time.time()
        if inits:
            start = _Start(pod, ref, sb_id, cfg, vol_paths, ro, vol_error, grace)
            if not await self.run_init(inits, obs, start, waiting, policy, now):
                for n in names:
                    waiting[n] = Waiting("PodInitializing")
                self.needs_tick = True  # an init container's exit is noticed at the next tick
                self.prober.sync([])
                await self.report(pod, ref, specs, await self.host.observe(self.uid), waiting, policy)
                return
        for spec in specs:
            name = str(spec["name"])
            act = L.container_action(spec, obs, sb_id, policy, forced=name in self.force_restart, liveness=self.prober.liveness_failure)
            target = act.container
            if act.do is L.Do.KEEP:
                continue
            if act.do is L.Do.RESTART and target is not None:
                log.info("pod %s: restarting container %s: %s", ref, name, act.reason)
                if act.reason == L.SPEC_CHANGED:
                    self.force_restart.add(name)
                    self._event("Normal", "Killing", f"Container {name} definition changed, will be restarted", name)
                else:
                    self._event("Normal", "Killing", f"Container {name} failed {act.reason.split(' probe')[0]} probe, will be restarted", name)
                await self._stop(target.id, grace)
                self.wake()
                continue
            if act.do is L.Do.START and target is not None:
                try:
                    await cri.start_container(target.id)
                    STARTS.inc()
                except CriError as exc:
                    if isinstance(exc, RuntimeUnavailable):
                        raise
                    waiting[name] = Waiting("RunContainerError", str(exc))
                continue
            if act.do is L.Do.STOP_STRAY and target is not None:
                await self._stop(target.id, 0)
                self.wake()
                continue
            if act.do is L.Do.CREATE_AFTER_BACKOFF and target is not None and self._backing_off(target, ref, now, waiting):
                continue
            start = _Start(pod, ref, sb_id, cfg, vol_paths, ro, vol_error, grace)
            await self.create_and_start(spec, target, start, waiting)

        obs = await self.host.observe(self.uid)
        if waiting:
            self.needs_tick = True  # back-offs expire, missing things appear: look again
        await self.collect_garbage(obs, names, sb_id)
        self.prober.sync([(cs.id, sp) for sp in self._probed(pod, specs) if (cs := obs.latest(str(sp["name"]), sb_id)) is not None and cs.state == RUNNING])

        await self.report(pod, ref, specs, obs, waiting, policy)

    def _past_deadline(self, pod: dict[str, Any], obs: Observed) -> bool:
        """``spec.activeDeadlineSeconds`` passed since the pod started on this node."""
        ads = (pod.get("spec") or {}).get("activeDeadlineSeconds")
        if self.deadline_exceeded or not isinstance(ads, int) or isinstance(ads, bool) or ads <= 0:
            return self.deadline_exceeded
        self.needs_tick = True  # the deadline passes with time: look every tick
        start = (parse_time((self.published or {}).get("startTime")) or None) if self.published else None
        started = start.timestamp() if start is not None else (obs.start_ns() / 1e9 if obs.start_ns() else None)
        if started is None or time.time() - started < ads:
            return False
        self.deadline_exceeded = True
        return True

    def _probed(self, pod: dict[str, Any], specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The containers whose probes run: none in a Wasm pod (no exec, and WASI preview 1
        gives a module no sockets to answer on); a Warning event says so, once."""
        if self.host.handler_of(pod) is None:
            return specs
        for sp in specs:
            kinds = [k for k in ("livenessProbe", "readinessProbe", "startupProbe") if isinstance(sp.get(k), dict)]
            if kinds and self._noted.get(f"probes:{sp['name']}") is None:
                self._noted[f"probes:{sp['name']}"] = ("Unsupported", "")
                self._event("Warning", "Unsupported", f"{', '.join(kinds)} not run: probes are not supported for Wasm containers (the container is ready while it runs)", str(sp["name"]))
        return []

    def _backing_off(self, last: CState, ref: S.PodRef, now: float, waiting: dict[str, Waiting]) -> bool:
        st = self.host.settings
        at = restart_at(last, initial=st.backoff_initial, cap=st.backoff_max, reset=st.backoff_reset)
        if now >= at:
            return False
        delay = at - last.finished_at / 1e9
        waiting[last.name] = Waiting("CrashLoopBackOff", f"back-off {delay:.0f}s restarting failed container={last.name} pod={ref.name}_{ref.namespace}({ref.uid})")
        self._note_waiting(last.name, waiting[last.name], key=last.id)
        return True

    async def create_and_start(self, spec: dict[str, Any], last: CState | None, s: _Start, waiting: dict[str, Waiting]) -> bool:
        """Create and start the next attempt of ``spec``'s container; on trouble, record
        why it waits in ``waiting`` and return False."""
        cri = self.host.cri
        name = str(spec["name"])
        ref = s.ref
        try:
            outcome = await self.host.images_for(s.pod).ensure(spec, note=functools.partial(self._event, container=name))

        except ImageError as exc:
            waiting[name] = Waiting(exc.reason, exc.message)
            self._note_waiting(name, waiting[name], key=exc.reason)
            return False
        if outcome == "present":
            self._event("Normal", "Pulled", f'Container image "{spec.get("image")}" already present on machine', name)
        try:
            if s.vol_error and spec.get("volumeMounts"):
                raise S.ConfigError(s.vol_error)
            env = S.resolve_env(s.pod, spec, self.host.sources_for(ref.namespace), node=self.host.node, host_ip=self.host.host_ip, pod_ip=self.host.host_ip)
            mounts = S.mounts(spec, s.vol_paths, s.ro)
            attempt = last.attempt + 1 if last is not None else 0
            ccfg = S.container_config(s.pod, spec, node=self.host.node, attempt=attempt, env=env, mounts=mounts, grace=s.grace)
        except S.ConfigError as exc:
            waiting[name] = Waiting(exc.reason, str(exc))
            self._note_waiting(name, waiting[name])
            return False
        try:
            cid = await cri.create_container(s.sb_id, ccfg, s.cfg)
        except RuntimeUnavailable:
            raise
        except CriError as exc:
            if "reserved" in str(exc):
                self.wake()  # created by a sync that was interrupted: adopt it next time
            else:
                waiting[name] = Waiting("CreateContainerError", str(exc))
                self._note_waiting(name, waiting[name])
            return False
        self._event("Normal", "Created", f"Created container {name}", name)
        try:
            await cri.start_container(cid)
        except RuntimeUnavailable:
            raise
        except CriError as exc:
            waiting[name] = Waiting("RunContainerError", str(exc))
            return False
        STARTS.inc()
        self.force_restart.discard(name)
        self._noted.pop(name, None)
        self._event("Normal", "Started", f"Started container {name}", name)
        log.info("pod %s: container %s started (attempt %d)", ref, name, attempt)
        return True

    async def run_init(self, inits: list[dict[str, Any]], obs: Observed, s: _Start, waiting: dict[str, Waiting], policy: str, now: float) -> bool:
        """Run the init containers one after the other, each to success before the next
        (in the current sandbox); True once all have succeeded. A failed one is run again
        (with back-off) unless the policy is ``Never`` (the caller then fails the pod)."""
        for spec in inits:
            name = str(spec["name"])
            cur = obs.latest(name, s.sb_id)
            if cur is not None and cur.state == EXITED and cur.exit_code == 0:
                continue
            if cur is not None and cur.state in (RUNNING, UNKNOWN):
                return False
            if cur is not None and cur.state == CREATED:
                try:
                    await self.host.cri.start_container(cur.id)
                    STARTS.inc()
                except RuntimeUnavailable:
                    raise
                except CriError as exc:
                    waiting[name] = Waiting("RunContainerError", str(exc))
                return False
            if cur is not None and (policy == "Never" or self._backing_off(cur, s.ref, now, waiting)):
                return False
            last = obs.latest(name)
            await self.create_and_start(spec, last, s, waiting)
            return False
        return True

    async def collect_garbage(self, obs: Observed, names: list[str], sb_id: str) -> None:
        """Keep the latest two containers per name (status and ``logs --previous``); remove
        older sandboxes once every container runs in the current one."""
        cri = self.host.cri
        for n in names:
            for c in obs.by_name(n)[2:]:
                if c.state != RUNNING:
                    await _ignore_missing(cri.remove_container(c.id))
                    self.host.forget_container(c.id)
        if all(obs.latest(n, sb_id) is not None for n in names):
            for box in obs.sandboxes:
                if box.id == sb_id:
                    continue
                for c in obs.containers:
                    if c.sandbox_id == box.id:
                        if c.state == RUNNING:
                            await self._stop(c.id, 0)
                        await _ignore_missing(cri.remove_container(c.id))
                        self.host.forget_container(c.id)
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
            if S.terminating(pod) or self.deadline_exceeded:
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
        inits = S.init_containers(pod)
        sb = obs.ready_sandbox()
        init_latest = [obs.latest(str(sp["name"]), sb.id if sb else None) for sp in inits]
        init_statuses = []
        for sp, latest in zip(inits, init_latest, strict=True):
            name = str(sp["name"])
            failed = latest is not None and latest.state == EXITED and latest.exit_code != 0
            cs = container_status(sp, latest, obs.previous(name), waiting.get(name), ready=False, started=False, will_restart=failed and policy != "Never" and not S.terminating(pod))
            cs["ready"] = latest is not None and latest.state == EXITED and latest.exit_code == 0
            init_statuses.append(cs)
        start = obs.start_ns()
        prev_start = (self.published or {}).get("startTime")
        return pod_status(
            pod,
            statuses,
            policy=policy,
            host_ip=self.host.host_ip,
            pod_ip=self.host.host_ip,
            start_time=prev_start or rfc3339(start) or rfc3339(time.time_ns()),
            previous=self.published,
            now=rfc3339(time.time_ns()) or "",
            init_statuses=init_statuses,
            init_state=init_progress(init_latest, policy) if inits else "done",
            deadline_exceeded=self.deadline_exceeded,
            reason="DeadlineExceeded" if self.deadline_exceeded else "",
            message="Pod was active on the node longer than the specified deadline" if self.deadline_exceeded else "",
        )

    async def report(self, pod: dict[str, Any], ref: S.PodRef, specs: list[dict[str, Any]], obs: Observed, waiting: dict[str, Waiting], policy: str) -> None:
        status = self.status(pod, specs, obs, waiting, policy=policy)
        if status != self.published and await self.host.publish_status(ref, status):
            self.published = status


@dataclass(frozen=True, slots=True)
class _Start:
    """What starting a container of a pod needs, prepared once per sync."""

    pod: dict[str, Any]
    ref: S.PodRef
    sb_id: str
    cfg: Any
    vol_paths: dict[str, str]
    ro: set[str]
    vol_error: str | None
    grace: int


async def _ignore_missing(aw: Any) -> None:
    try:
        await aw
    except CriNotFound:
        pass


__all__ = ["FULL_SYNC_SECONDS", "PodWorker"]
