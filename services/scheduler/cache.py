"""The scheduler's memory: nodes and pods from the watch (never a list per pod), and the
scheduling queue.

:class:`Cache` keeps a :class:`NodeInfo` per node with the pods bound to it (and their
summed requests), the unscheduled pods this scheduler owns, and the bound pods that carry
pod (anti-)affinity terms. A pod the scheduler has just bound is *assumed* on its node at
once, so the next decision already sees its requests before the watch brings the binding
back; a failed binding forgets it.

:class:`Queue` is kube-scheduler's three queues: *active* (to schedule now, in arrival
order), *backoff* (failed recently: waits ``initial * 2^(attempts-1)`` seconds, capped)
and *unschedulable* (failed; moved back when the cluster changes in a way that may help:
a node added or changed, a bound pod gone or added — or after ``flush_after`` seconds).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgebus import clock

from services.scheduler.model import DEFAULT_SCHEDULER, NodeInfo, PodInfo, PodKey, node_info, pod_info


def _schedulable_part(pod: dict[str, Any]) -> tuple[Any, ...]:
    """What a pending pod's update must change to be worth another attempt at once (as
    kube-scheduler: not its status or resourceVersion)."""
    md = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields", "generation")}
    return (repr(md), repr(pod.get("spec")))


def _node_fingerprint(n: NodeInfo) -> tuple[Any, ...]:
    """What a node change must touch for a pending pod to possibly fit now."""
    return (tuple(sorted(n.labels.items())), repr(n.taints), n.unschedulable, tuple(sorted(n.allocatable.items())))


class Cache:
    def __init__(self, scheduler_name: str = DEFAULT_SCHEDULER) -> None:
        self.scheduler_name = scheduler_name
        self.nodes: dict[str, NodeInfo] = {}
        self._node_list: list[NodeInfo] | None = None
        self.bound: dict[PodKey, PodInfo] = {}
        self.with_affinity: dict[PodKey, PodInfo] = {}
        self.pending: dict[PodKey, PodInfo] = {}
        self.assumed: dict[PodKey, str] = {}
        self.start = 0

    # -- views --------------------------------------------------------------------------
    def node_list(self) -> list[NodeInfo]:
        if self._node_list is None:
            self._node_list = [self.nodes[n] for n in sorted(self.nodes)]
        return self._node_list

    def bound_for(self, pod: PodInfo) -> Iterable[PodInfo]:
        """The bound pods a decision about ``pod`` must see: all of them when the pod has
        pod (anti-)affinity terms, else only those with terms of their own."""
        return self.bound.values() if pod.has_pod_affinity else self.with_affinity.values()

    def wants(self, p: PodInfo) -> bool:
        return not p.node and p.scheduler == self.scheduler_name and not p.terminating and not p.finished and not p.gated

    # -- changes from the watch -----------------------------------------------------------
    def apply_node(self, obj: dict[str, Any], deleted: bool) -> bool:
        """Apply a Node event; True when it may let a pending pod fit."""
        info = node_info(obj)
        old = self.nodes.get(info.name)
        if deleted:
            if old is None:
                return False
            del self.nodes[info.name]
            self._node_list = None
            return False
        if old is not None:
            info.pods, info.requested, info.ports, info.owners = old.pods, old.requested, old.ports, old.owners
            info.nonzero_cpu, info.nonzero_mem = old.nonzero_cpu, old.nonzero_mem
        else:
            for p in self.bound.values():  # pods bound before their node appeared
                if p.node == info.name:
                    info.add(p)
        self.nodes[info.name] = info
        self._node_list = None
        return old is None or _node_fingerprint(old) != _node_fingerprint(info)

    def apply_pod(self, obj: dict[str, Any], deleted: bool) -> tuple[PodInfo | None, bool]:
        """Apply a Pod event: (the pod if it is now pending for this scheduler, whether the
        change may let other pending pods fit)."""
        p = pod_info(obj)
        key = p.key
        old = self.bound.get(key)
        if deleted or p.finished:
            self.pending.pop(key, None)
            self.assumed.pop(key, None)
            return None, self._unbind(key) is not None
        if p.node:
            self.pending.pop(key, None)
            self.assumed.pop(key, None)
            changed = old is None or old.node != p.node or old.labels != p.labels or old.terminating != p.terminating or old.requests != p.requests
            self._bind(p)
            return None, changed
        if old is not None:  # unbound again (a re-created pod of the same name)
            self._unbind(key)
        if self.wants(p):
            if key in self.assumed:
                return None, False  # our own binding is on its way: the watch is behind
            before = self.pending.get(key)
            self.pending[key] = p
            if before is not None and _schedulable_part(before.raw) == _schedulable_part(p.raw):
                return None, old is not None  # only its status changed (e.g. our own condition)
            return p, old is not None
        self.pending.pop(key, None)
        return None, old is not None

    def _bind(self, p: PodInfo) -> None:
        old = self.bound.get(p.key)
        if old is not None and old.node in self.nodes:
            self.nodes[old.node].remove(p.key)
        self.bound[p.key] = p
        if p.has_pod_affinity:
            self.with_affinity[p.key] = p
        else:
            self.with_affinity.pop(p.key, None)
        n = self.nodes.get(p.node)
        if n is not None:
            n.add(p)

    def _unbind(self, key: PodKey) -> PodInfo | None:
        old = self.bound.pop(key, None)
        self.with_affinity.pop(key, None)
        if old is not None and old.node in self.nodes:
            self.nodes[old.node].remove(key)
        return old

    # -- assumptions ----------------------------------------------------------------------
    def assume(self, p: PodInfo, node: str) -> PodInfo:
        """Count ``p`` on ``node`` now (the binding is being written)."""
        self.pending.pop(p.key, None)
        bound = pod_info(p.raw)
        bound.node = node
        self.assumed[p.key] = node
        self._bind(bound)
        return bound

    def forget(self, key: PodKey) -> None:
        """The binding failed: the pod is not on that node after all."""
        if self.assumed.pop(key, None) is not None:
            self._unbind(key)


@dataclass(order=True, slots=True)
class _Due:
    at: float
    key: PodKey


class Queue:
    def __init__(self, *, initial_backoff: float = 1.0, max_backoff: float = 10.0, flush_after: float = 300.0) -> None:
        self.initial = initial_backoff
        self.max = max_backoff
        self.flush_after = flush_after
        self.active: deque[PodKey] = deque()
        self._in_active: set[PodKey] = set()
        self.backoff: list[_Due] = []
        self.unschedulable: dict[PodKey, float] = {}  # key -> when it was put there
        self.attempts: dict[PodKey, int] = {}
        self.last_attempt: dict[PodKey, float] = {}
        self._wake = asyncio.Event()
        self._changed = False
        self._next_flush = 0.0

    def __len__(self) -> int:
        return len(self._in_active) + len(self.backoff) + len(self.unschedulable)

    def _backoff_of(self, key: PodKey) -> float:
        n = self.attempts.get(key, 0)
        return 0.0 if n <= 0 else min(self.initial * (2 ** (n - 1)), self.max)

    def add(self, key: PodKey) -> None:
        """A new or changed pending pod: schedule it now."""
        self.unschedulable.pop(key, None)
        if key not in self._in_active:
            self._in_active.add(key)
            self.active.append(key)
        self._wake.set()

    def done(self, key: PodKey) -> None:
        """The pod is bound (or gone): forget it."""
        self.unschedulable.pop(key, None)
        self.attempts.pop(key, None)
        self.last_attempt.pop(key, None)
        if key in self._in_active:
            self._in_active.discard(key)  # its stale deque entry is skipped by pop()

    def failed(self, key: PodKey, *, retry_now: bool = False) -> None:
        """The attempt failed: unschedulable until the cluster changes (``retry_now``: a
        failure of our own, e.g. a lost binding, goes to back-off directly)."""
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.last_attempt[key] = time.monotonic()
        if retry_now:
            heapq.heappush(self.backoff, _Due(time.monotonic() + self._backoff_of(key), key))
            self._wake.set()
        else:
            self.unschedulable[key] = time.monotonic()

    def cluster_changed(self) -> None:
        """Something changed that may let unschedulable pods fit: move them (coalesced)."""
        if self.unschedulable:
            self._changed = True
            self._wake.set()

    def _move(self, keys: Iterable[PodKey], now: float) -> None:
        for key in list(keys):
            self.unschedulable.pop(key, None)
            due = self.last_attempt.get(key, 0.0) + self._backoff_of(key)
            if due <= now:
                self.add(key)
            else:
                heapq.heappush(self.backoff, _Due(due, key))

    async def pop(self) -> PodKey:
        """The next pod to schedule (waits for one)."""
        while True:
            now = time.monotonic()
            if self._changed:
                self._changed = False
                self._move(list(self.unschedulable), now)
            if self.unschedulable and now >= self._next_flush:  # at most once a second
                self._next_flush = now + 1.0
                self._move([k for k, t in self.unschedulable.items() if now - t >= self.flush_after], now)
            while self.backoff and self.backoff[0].at <= now:
                self.add(heapq.heappop(self.backoff).key)
            while self.active:
                key = self.active.popleft()
                if key in self._in_active:
                    self._in_active.discard(key)
                    return key
            self._wake.clear()
            timeout = self.backoff[0].at - now if self.backoff else None
            if self.unschedulable:
                t = self._next_flush - now
                timeout = t if timeout is None else min(timeout, t)
            await clock.wait_set(self._wake, None if timeout is None else max(timeout, 0.0))
