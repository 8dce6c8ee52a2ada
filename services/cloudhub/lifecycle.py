"""Node lifecycle: which nodes are alive, what happens to an unreachable node and its pods.

* :class:`NodeView` (every replica): each node's Ready status and last recorded heartbeat,
  from a watch of the Node objects. Heartbeat ingestion consults it, so a heartbeat of a
  node recorded less than grace/4 ago costs no I/O at all.
* :class:`Lifecycle` (one replica at a time: lease ``cloudhub-lifecycle``): a watch of
  Nodes and Pods feeds :class:`~services.cloudhub.liveness.Liveness` — a node's deadline is
  the time *this process* saw its heartbeat recorded plus the grace period. A node past
  its deadline becomes Ready=Unknown, tainted ``node.kubernetes.io/unreachable``
  (NoExecute and NoSchedule), and its pods' Ready condition turns False. Pods are not
  deleted unless they tolerate the taint with ``tolerationSeconds`` (failover, opted
  into). When the node's heartbeats are recorded again, the taints go (ingestion does
  that) and the pods get back the readiness their node last reported.
* Every node gets a full grace period after this process starts or takes over the lease,
  and again whenever it may have missed heartbeats: its own loop stalled (a SIGSTOP, a
  starved CPU) or its NATS server did not answer a ping in time.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from edgebus import clock
from edgebus.bus import Bus, BusError
from edgebus.errors import ApiError, Conflict, NotFound
from edgebus.events import NORMAL, WARNING, EventRecorder
from edgebus.objects import NODES, PODS
from edgebus.objects.resources import meta, parse_time
from edgebus.objects.taints import NO_EXECUTE, taints_of
from edgebus.objectstore import BOOKMARK, DELETED, ObjectStore
from services.cloudhub import logic
from services.cloudhub.liveness import EvictionTimers, Liveness

log = logging.getLogger("edgebus.cloudhub.lifecycle")

NODE_COUNT = Gauge("edgebus_nodes", "Nodes by status (Ready / NotReady)", ["status"])
POD_COUNT = Gauge("edgebus_pods", "Pods by phase (the lifecycle lease holder's count)", ["phase"])
HEARTBEAT_TS = Gauge("edgebus_node_heartbeat_timestamp_seconds", "When the cloud last recorded a heartbeat of the node", ["node"])
TRANSITIONS = Counter("edgebus_node_lifecycle_transitions_total", "Nodes marked NotReady / back to Ready", ["to"])
HOLDS = Counter("edgebus_node_lifecycle_holds_total", "Times every node got a fresh grace period (takeover, stalled, nats)", ["reason"])
EVICTIONS = Counter("edgebus_taint_evictions_total", "Pods deleted because a NoExecute taint's toleration ran out")

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
#: a tick later than this (beyond its interval) means this process was not running
GAP = 2.0


def _ready(node: dict[str, Any]) -> tuple[str, str | None]:
    c = logic.ready_condition(node) or {}
    return str(c.get("status") or ""), c.get("lastHeartbeatTime")


class NodeView:
    """Every node's (Ready status, last recorded heartbeat), from a watch."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.nodes: dict[str, tuple[str, dt.datetime | None]] = {}
        self.synced = False
        self._counts = {"Ready": 0, "NotReady": 0}

    def recent(self, node: str, now: dt.datetime, window: float) -> bool:
        """Ready, and a heartbeat recorded less than ``window`` seconds ago."""
        st = self.nodes.get(node)
        return st is not None and st[0] == "True" and st[1] is not None and (now - st[1]).total_seconds() < window

    def apply(self, obj: dict[str, Any], deleted: bool) -> None:
        name = str(meta(obj).get("name") or "")
        old = self.nodes.pop(name, None)
        if old is not None:
            self._counts["Ready" if old[0] == "True" else "NotReady"] -= 1
        if deleted:
            if old is not None and old[1] is not None:
                HEARTBEAT_TS.remove(name)
        else:
            status, hb = _ready(obj)
            t = parse_time(hb)
            self.nodes[name] = (status, t)
            self._counts["Ready" if status == "True" else "NotReady"] += 1
            if t is not None and (old is None or old[1] != t):
                HEARTBEAT_TS.labels(name).set(t.timestamp())
        for k, v in self._counts.items():
            NODE_COUNT.labels(k).set(v)

    async def run(self) -> None:
        self.nodes.clear()
        self._counts = {"Ready": 0, "NotReady": 0}
        async with aclosing(self.store.watch([NODES], bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    self.synced = True
                    continue
                self.apply(ev.object, ev.type == DELETED)


@dataclass
class _Node:
    status: str
    heartbeat: str | None
    taints: list[dict[str, Any]]
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class Lifecycle:
    def __init__(self, store: ObjectStore, bus: Bus, *, grace: float, interval: float, probe_timeout: float) -> None:
        self.store = store
        self.bus = bus
        self.grace = grace
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.events = EventRecorder(store, "node-controller")
        self.synced = False
        self.reset()

    def reset(self) -> None:
        self.liveness = Liveness(self.grace)
        self.timers = EvictionTimers()
        self.nodes: dict[str, _Node] = {}
        self.pod_node: dict[tuple[str, str], str] = {}
        self.phases: dict[str, int] = dict.fromkeys(PHASES, 0)
        self._pod_phase: dict[tuple[str, str], str] = {}
        self._wake = asyncio.Event()

    def hold(self, why: str, detail: str) -> None:
        """Every node gets a full grace period from now (``why``: takeover, stalled, nats)."""
        self.liveness.hold(time.monotonic())
        HOLDS.labels(why).inc()
        log.info("every node gets a full grace period (%.0fs) from now: %s", self.grace, detail)

    async def run(self) -> None:
        """The lease holder's work."""
        self.synced = False
        self.reset()
        self.hold("takeover", "took over the node lifecycle")
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch(), name="lifecycle-watch")
            tg.create_task(self._ticks(), name="lifecycle-ticks")

    # -- what the watch says ----------------------------------------------------------------
    async def _watch(self) -> None:
        async with aclosing(self.store.watch([NODES, PODS], bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    self.synced = True
                    await self._reconcile_all()
                    continue
                if ev.resource is NODES:
                    await self._node(ev.object, ev.type == DELETED)
                else:
                    await self._pod(ev.object, ev.type == DELETED)

    async def _node(self, obj: dict[str, Any], deleted: bool) -> None:
        name = str(meta(obj).get("name") or "")
        old = self.nodes.get(name)
        if deleted:
            self.liveness.forget(name)
            if old is not None:
                for key in old.pods:
                    self.timers.disarm(key)
                del self.nodes[name]
            return
        status, hb = _ready(obj)
        st = _Node(status, hb, taints_of(obj), old.pods if old is not None else {})
        self.nodes[name] = st
        if status == "True":
            if old is None or old.status != "True" or old.heartbeat != hb:
                self.liveness.observe(name, time.monotonic())
                self._wake.set()
            if old is not None and old.status not in ("True", "") and self.synced:
                TRANSITIONS.labels("Ready").inc()
                log.info("node %s is Ready again", name)
                await self.events.record(obj, NORMAL, "NodeReady", f"Node {name} status is now: NodeReady")
                await self._restore_pods(name)
        else:
            self.liveness.forget(name)
        if old is None or old.taints != st.taints:
            for key, pod in st.pods.items():
                self._arm(key, pod, st.taints)

    async def _pod(self, obj: dict[str, Any], deleted: bool) -> None:
        md = meta(obj)
        key = (str(md.get("namespace") or "default"), str(md.get("name") or ""))
        phase = "" if deleted else str((obj.get("status") or {}).get("phase") or "Pending")
        before = self._pod_phase.pop(key, None)
        if before:
            self.phases[before] = self.phases.get(before, 0) - 1
        if phase:
            self._pod_phase[key] = phase
            self.phases[phase] = self.phases.get(phase, 0) + 1
        for p in PHASES:
            POD_COUNT.labels(p).set(self.phases.get(p, 0))
        was = self.pod_node.pop(key, None)
        if was is not None and was in self.nodes:
            self.nodes[was].pods.pop(key, None)
        node = (obj.get("spec") or {}).get("nodeName")
        if deleted or not node:
            self.timers.disarm(key)
            return
        self.pod_node[key] = str(node)
        st = self.nodes.get(str(node))
        if st is None:
            return
        st.pods[key] = obj
        self._arm(key, obj, st.taints)

    def _arm(self, key: tuple[str, str], pod: dict[str, Any], node_taints: list[dict[str, Any]]) -> None:
        if md := meta(pod):
            if md.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                self.timers.disarm(key)
                return
        at = logic.eviction_at(pod, node_taints) if any(t.get("effect") == NO_EXECUTE for t in node_taints) else None
        if at is None:
            self.timers.disarm(key)
        else:
            self.timers.arm(key, str(meta(pod).get("uid") or ""), at)
            self._wake.set()

    async def _reconcile_all(self) -> None:
        """After the initial list: finish what a previous holder may have left half done."""
        for name, st in list(self.nodes.items()):
            if st.status == "True":
                await self._restore_pods(name)
            elif st.status == "Unknown":
                await self._mark_pods(name)

    # -- time --------------------------------------------------------------------------------
    async def _ticks(self) -> None:
        last = time.monotonic()
        while True:
            due = [d for d in (self.liveness.next_due(), _mono_of(self.timers.next_due())) if d is not None]
            wait = min([self.interval, *(d - time.monotonic() for d in due)])
            self._wake.clear()
            await clock.wait_set(self._wake, max(wait, 0.0))
            now = time.monotonic()
            if now - last > self.interval + GAP:
                self.hold("stalled", f"this process did not run for {now - last:.1f}s")
            if not await self._probe():
                self.hold("nats", "the NATS server did not answer in time")
            last = time.monotonic()
            if not self.synced:
                continue
            for name in self.liveness.expired(last):
                await self._expire(name)
            if last >= self.liveness.floor:
                for key, uid in self.timers.due(time.time()):
                    await self._evict(key, uid)

    async def _probe(self) -> bool:
        t0 = time.monotonic()
        try:
            await self.bus.flush(timeout=self.probe_timeout)
        except Exception:  # noqa: BLE001 - any failure means we may be missing heartbeats
            return False
        return time.monotonic() - t0 < self.probe_timeout

    # -- what the lifecycle does ------------------------------------------------------------
    async def _expire(self, name: str) -> None:
        st = self.nodes.get(name)
        if st is None or st.status != "True":
            return
        now = dt.datetime.now(dt.UTC)
        try:
            res = await self.store.mutate(NODES, None, name, lambda obj: logic.mark_unreachable(obj, st.heartbeat, now))
        except (NotFound, Conflict):
            return
        except (ApiError, BusError) as exc:
            log.warning("node %s: could not mark it NotReady (%s); retrying", name, exc)
            self.liveness.observe(name, time.monotonic() - self.grace + self.interval)
            return
        if res is None:
            return  # a heartbeat was recorded meanwhile
        TRANSITIONS.labels("NotReady").inc()
        log.warning("node %s is NotReady: no heartbeat recorded for %.0fs; its pods keep running on it", name, self.grace)
        st.status = "Unknown"
        await self.events.record(res, NORMAL, "NodeNotReady", f"Node {name} status is now: NodeNotReady")
        await self._mark_pods(name)

    async def _mark_pods(self, name: str) -> None:
        st = self.nodes.get(name)
        if st is None:
            return
        now = dt.datetime.now(dt.UTC)
        for (ns, pname), pod in list(st.pods.items()):
            if logic.pod_not_ready(copy.deepcopy(pod), name, now) is None:
                continue
            try:
                res = await self.store.mutate(PODS, ns, pname, lambda cur: logic.pod_not_ready(cur, name, now))
            except (NotFound, Conflict, ApiError, BusError) as exc:
                log.info("pod %s/%s: readiness not updated: %s", ns, pname, exc)
                continue
            if res is not None:
                await self.events.record(res, WARNING, "NodeNotReady", "Node is not ready")

    async def _restore_pods(self, name: str) -> None:
        st = self.nodes.get(name)
        if st is None:
            return
        for (ns, pname), pod in list(st.pods.items()):
            if logic.READY_BEFORE not in ((meta(pod).get("annotations") or {})):
                continue
            try:
                await self.store.mutate(PODS, ns, pname, logic.pod_ready_restored)
            except (NotFound, Conflict, ApiError, BusError) as exc:
                log.info("pod %s/%s: readiness not restored: %s", ns, pname, exc)

    async def _evict(self, key: tuple[str, str], uid: str) -> None:
        ns, name = key
        try:
            pod = await self.store.get(PODS, ns, name)
            node = await self.store.get(NODES, None, str((pod.get("spec") or {}).get("nodeName") or ""))
        except (NotFound, ApiError, BusError):
            return
        if meta(pod).get("uid") != uid or meta(pod).get("deletionTimestamp"):
            return
        at = logic.eviction_at(pod, taints_of(node))
        if at is None:
            return
        if at > time.time():
            self.timers.arm(key, uid, at)
            return
        try:
            await self.store.delete(PODS, ns, name, uid=uid)
        except (NotFound, Conflict, ApiError, BusError) as exc:
            log.info("pod %s/%s not evicted: %s", ns, name, exc)
            return
        EVICTIONS.inc()
        log.warning("pod %s/%s deleted: its toleration of node %s's taints ran out", ns, name, meta(node).get("name"))
        await self.events.record(pod, NORMAL, "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}")


def _mono_of(wall: float | None) -> float | None:
    return None if wall is None else time.monotonic() + (wall - time.time())
