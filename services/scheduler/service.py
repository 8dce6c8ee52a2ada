"""scheduler: binds pods that have no node (``spec.nodeName``) to one, and keeps the
status of PodDisruptionBudgets.

Level-triggered from one watch of Nodes, Pods, PodDisruptionBudgets and RuntimeClasses (list first, then
changes; restarts and lease take-overs start from a fresh list): the watch feeds the
:class:`~services.scheduler.cache.Cache` and the queue; the scheduling loop takes one pod
at a time, decides in memory (:func:`services.scheduler.logic.schedule`), assumes the pod
on the chosen node and hands the binding to a writer, so decisions never wait for writes.
A binding is a compare-and-set of the pod at the revision the watch delivered (the
``pods/binding`` rules of :mod:`edgebus.objects.binding`), falling back to a read when the
pod changed meanwhile. ``Scheduled`` / ``FailedScheduling`` Events and the pod's
``PodScheduled`` condition are written by a bounded pool of their own (best effort).

With several replicas, one holds the ``scheduler`` lease and works; the others stand by.
"""

from __future__ import annotations

import functools
import asyncio
import copy
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from edgebus.bus import BusError
from edgebus.errors import ApiError, Conflict, NotFound
from edgebus.events import NORMAL, WARNING, EventRecorder
from edgebus.objects import NODES, PODDISRUPTIONBUDGETS, PODS, RUNTIMECLASSES
from edgebus.objects import binding as B
from edgebus.objectstore import BOOKMARK, DELETED, ObjectStore
from edgebus.runtime import Service, setup_logging
from services.scheduler import logic
from services.scheduler.cache import Cache, Queue
from services.scheduler.config import Settings
from services.scheduler.disruption import Disruption
from services.scheduler.model import PodInfo, with_runtime_class

log = logging.getLogger("edgebus.scheduler")

ATTEMPTS = Counter("edgebus_scheduler_attempts_total", "Scheduling attempts", ["result"])
BIND_SECONDS = Histogram("edgebus_scheduler_binding_seconds", "From the decision to the binding written", buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5))
DECIDE_SECONDS = Histogram("edgebus_scheduler_decision_seconds", "Time to filter and score one pod", buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5))
PENDING = Gauge("edgebus_scheduler_pending_pods", "Pods waiting to be scheduled (all queues)")
DROPPED = Counter("edgebus_scheduler_side_effects_dropped_total", "Events / status updates dropped because their queue was full")


class Writers:
    """A bounded pool for best-effort writes (events, pod conditions): a full queue drops
    the write (counted) rather than slowing the scheduler down."""

    def __init__(self, n: int, size: int = 10_000) -> None:
        self.n = n
        self.q: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue(size)

    def submit(self, job: Callable[[], Awaitable[None]]) -> None:
        try:
            self.q.put_nowait(job)
        except asyncio.QueueFull:
            DROPPED.inc()

    async def run(self) -> None:
        async def worker() -> None:
            while True:
                job = await self.q.get()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - best effort
                    log.debug("side effect failed: %s", exc)

        async with asyncio.TaskGroup() as tg:
            for i in range(self.n):
                tg.create_task(worker(), name=f"writer-{i}")


def _scheduled_condition(pod: dict[str, Any], message: str) -> dict[str, Any] | None:
    """``pod`` with ``PodScheduled=False`` (Unschedulable, ``message``), or None if it has it."""
    st = pod.setdefault("status", {})
    conds = [c for c in st.get("conditions") or [] if isinstance(c, dict)]
    cur = next((c for c in conds if c.get("type") == "PodScheduled"), None)
    if cur is not None and cur.get("status") == "False" and cur.get("reason") == "Unschedulable" and cur.get("message") == message:
        return None
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    new = {"type": "PodScheduled", "status": "False", "lastProbeTime": None, "lastTransitionTime": now, "reason": "Unschedulable", "message": message}
    if cur is not None and cur.get("status") == "False":
        new["lastTransitionTime"] = cur.get("lastTransitionTime") or now
    st["conditions"] = [new, *(c for c in conds if c.get("type") != "PodScheduled")]
    st.setdefault("phase", "Pending")
    return pod


class Scheduler:
    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self.store = store
        self.cfg = settings.scheduler
        self.events = EventRecorder(store, self.cfg.name)
        self.synced = False
        self.disruption = Disruption(store)
        self._reset()

    def _reset(self) -> None:
        self.cache = Cache(self.cfg.name)
        self.queue = Queue(initial_backoff=self.cfg.initial_backoff, max_backoff=self.cfg.max_backoff, flush_after=self.cfg.flush_unschedulable)
        self.binds = asyncio.Semaphore(self.cfg.bind_concurrency)
        self.writers = Writers(self.cfg.event_concurrency)
        self._synced = asyncio.Event()
        self.disruption.reset()
        #: RuntimeClasses by name (a pod's ``runtimeClassName`` picks the handler, and the
        #: class's node selector and tolerations)
        self.runtime_classes: dict[str, dict[str, Any]] = {}

    async def run(self) -> None:
        """The leader's work: watch, schedule, write."""
        self.synced = False
        self._reset()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch(), name="watch")
            tg.create_task(self._schedule(tg), name="schedule")
            tg.create_task(self.writers.run(), name="writers")
            tg.create_task(self.disruption.run(), name="disruption")

    # -- the watch --------------------------------------------------------------------------
    async def _watch(self) -> None:
        async with aclosing(self.store.watch([NODES, PODS, PODDISRUPTIONBUDGETS, RUNTIMECLASSES], bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    for key in self.cache.pending:
                        self.queue.add(key)
                    self.synced = True
                    self._synced.set()
                    self.disruption.synced()
                    log.info("initial sync: %d nodes, %d pods pending", len(self.cache.nodes), len(self.cache.pending))
                    continue
                deleted = ev.type == DELETED
                if ev.resource is NODES:
                    if self.cache.apply_node(ev.object, deleted):
                        self.queue.cluster_changed()
                elif ev.resource is PODS:
                    key = (ev.object["metadata"].get("namespace") or "default", ev.object["metadata"].get("name") or "")
                    pending, changed = self.cache.apply_pod(ev.object, deleted)
                    if pending is not None:
                        if self.synced:
                            self.queue.add(key)
                    elif key not in self.cache.assumed and key not in self.cache.pending:
                        self.queue.done(key)
                    if changed:
                        self.queue.cluster_changed()
                    self.disruption.pod(ev.object, deleted)
                elif ev.resource is PODDISRUPTIONBUDGETS:
                    self.disruption.pdb(ev.object, deleted)
                elif ev.resource is RUNTIMECLASSES:
                    rc_name = str(ev.object["metadata"].get("name") or "")
                    if deleted:
                        self.runtime_classes.pop(rc_name, None)
                    else:
                        self.runtime_classes[rc_name] = ev.object
                    self.queue.cluster_changed()
                PENDING.set(len(self.cache.pending) + len(self.cache.assumed))

    # -- scheduling ------------------------------------------------------------------------
    async def _schedule(self, tg: asyncio.TaskGroup) -> None:
        """Decide pod after pod; bindings run as tasks of ``tg`` (losing the lease cancels
        them with the rest)."""
        await self._synced.wait()
        while True:
            key = await self.queue.pop()
            pod = self.cache.pending.get(key)
            if pod is None:
                continue
            resolved = with_runtime_class(pod, self.runtime_classes.get(pod.runtime_class))
            if isinstance(resolved, str):
                ATTEMPTS.labels("unschedulable").inc()
                self.queue.failed(key)
                log.info("pod %s/%s unschedulable: %s", key[0], key[1], resolved)
                self.writers.submit(functools.partial(self._unschedulable, pod, resolved))
                continue
            pod = resolved
            t0 = time.perf_counter()
            res = logic.schedule(pod, self.cache.node_list(), self.cache.bound_for(pod), start=self.cache.start)
            DECIDE_SECONDS.observe(time.perf_counter() - t0)
            self.cache.start = res.next_start
            if res.node is not None:
                ATTEMPTS.labels("scheduled").inc()
                self.cache.assume(pod, res.node)
                await self.binds.acquire()
                tg.create_task(self._bind(pod, res.node), name=f"bind:{key[1]}")
            else:
                ATTEMPTS.labels("unschedulable").inc()
                self.queue.failed(key)
                msg = res.message
                log.info("pod %s/%s unschedulable: %s", key[0], key[1], msg)
                self.writers.submit(functools.partial(self._unschedulable, pod, msg))
            await asyncio.sleep(0)  # let the watch deliver between decisions

    async def _bind(self, pod: PodInfo, node: str) -> None:
        t0 = time.perf_counter()
        ns, name = pod.key
        try:
            try:
                await self.store.replace_at(PODS, B.bind(copy.deepcopy(pod.raw), node))
            except Conflict:  # the pod changed since the watch delivered it: bind its latest version
                await self.store.mutate(PODS, ns, name, lambda cur: B.bind(cur, node, uid=pod.uid))
        except (ApiError, BusError) as exc:
            self.cache.forget(pod.key)
            if isinstance(exc, NotFound):
                self.queue.done(pod.key)
                return
            log.info("binding %s/%s to %s failed: %s", ns, name, node, exc)
            if pod.key not in self.cache.bound:
                self.cache.pending.setdefault(pod.key, pod)
                self.queue.failed(pod.key, retry_now=True)
            return
        finally:
            self.binds.release()
        BIND_SECONDS.observe(time.perf_counter() - t0)
        self.queue.done(pod.key)
        log.debug("bound %s/%s to %s", ns, name, node)
        raw = pod.raw
        self.writers.submit(lambda: self.events.record(raw, NORMAL, "Scheduled", f"Successfully assigned {ns}/{name} to {node}", action="Binding"))

    async def _unschedulable(self, pod: PodInfo, message: str) -> None:
        ns, name = pod.key
        await self.events.record(pod.raw, WARNING, "FailedScheduling", message, action="Scheduling")
        try:
            await self.store.mutate(PODS, ns, name, lambda cur: None if (cur.get("spec") or {}).get("nodeName") else _scheduled_condition(cur, message))
        except (NotFound, Conflict):
            pass


def build(settings: Settings | None = None) -> Service[Scheduler]:
    settings = settings or Settings()
    svc: Service[Scheduler] = Service("scheduler", settings)
    store = ObjectStore(svc.bus, replicas=settings.scheduler.kv_replicas, event_ttl=settings.events.ttl)
    sched = Scheduler(store, settings)
    svc.ctx = sched

    @svc.on_start
    async def ensure(_: Service[Scheduler]) -> None:
        await store.ensure()

    svc.lead("scheduler", sched.run, ttl=settings.scheduler.lease_ttl, synced=lambda: sched.synced)
    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("scheduler", settings)
    run(lambda: build(settings))
