"""The disruption controller: keeps each PodDisruptionBudget's ``status``
(``currentHealthy``, ``desiredHealthy``, ``disruptionsAllowed``, ``expectedPods``,
``disruptedPods``, the ``DisruptionAllowed`` condition) equal to what its pods say
(:func:`edgebus.objects.disruption.status`).

Fed by the scheduler's watch: a pod change marks only the budgets of its namespace that
cover it (before or after the change); a short debounce folds a burst into one write per
budget. Writes are compare-and-set on the latest budget, recomputed from it, so an
eviction that took a disruption meanwhile is never overwritten. An eviction not yet
reflected in the pods expires after :data:`~edgebus.objects.disruption.DISRUPTED_TIMEOUT`;
a timer re-evaluates the budget then.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import logging
import time
from typing import Any

from prometheus_client import Counter

from edgebus import clock
from edgebus.errors import Conflict, NotFound
from edgebus.objects import PODDISRUPTIONBUDGETS
from edgebus.objects import disruption as D
from edgebus.objects.resources import meta, parse_time
from edgebus.objectstore import ObjectStore

log = logging.getLogger("edgebus.scheduler.disruption")

WRITES = Counter("edgebus_pdb_status_writes_total", "PodDisruptionBudget status writes")

Key = tuple[str, str]
DEBOUNCE = 0.05


class Disruption:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.reset()

    def reset(self) -> None:
        self.pdbs: dict[str, dict[str, dict[str, Any]]] = {}  # ns -> name -> pdb
        self.pods: dict[str, dict[str, dict[str, Any]]] = {}  # ns -> name -> pod
        self.dirty: set[Key] = set()
        self._timers: list[tuple[float, Key]] = []
        self._wake = asyncio.Event()
        self._synced = False

    def synced(self) -> None:
        self._synced = True
        for ns, byname in self.pdbs.items():
            self.dirty.update((ns, n) for n in byname)
        self._wake.set()

    def _mark(self, key: Key) -> None:
        self.dirty.add(key)
        self._wake.set()

    def pod(self, obj: dict[str, Any], deleted: bool) -> None:
        md = meta(obj)
        ns, name = str(md.get("namespace") or "default"), str(md.get("name") or "")
        old = self.pods.get(ns, {}).get(name)
        if deleted:
            self.pods.get(ns, {}).pop(name, None)
        else:
            self.pods.setdefault(ns, {})[name] = obj
        for pname, pdb in self.pdbs.get(ns, {}).items():
            if (old is not None and D.covers(pdb, old)) or D.covers(pdb, obj):
                self._mark((ns, pname))

    def pdb(self, obj: dict[str, Any], deleted: bool) -> None:
        md = meta(obj)
        ns, name = str(md.get("namespace") or "default"), str(md.get("name") or "")
        if deleted:
            self.pdbs.get(ns, {}).pop(name, None)
            self.dirty.discard((ns, name))
            return
        self.pdbs.setdefault(ns, {})[name] = obj
        self._mark((ns, name))

    async def run(self) -> None:
        while True:
            timeout = None
            if self._timers:
                timeout = max(self._timers[0][0] - time.monotonic(), 0.0)
            await clock.wait_set(self._wake, timeout)
            self._wake.clear()
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                self.dirty.add(heapq.heappop(self._timers)[1])
            if not self._synced or not self.dirty:
                continue
            await asyncio.sleep(DEBOUNCE)  # fold a burst of pod changes into one pass
            todo, self.dirty = self.dirty, set()
            for key in sorted(todo):
                await self._sync(key)

    async def _sync(self, key: Key) -> None:
        ns, name = key
        if name not in self.pdbs.get(ns, {}):
            return
        pods = list(self.pods.get(ns, {}).values())
        now = dt.datetime.now(dt.UTC)

        def update(cur: dict[str, Any]) -> dict[str, Any] | None:
            st = D.status(cur, pods, now)
            if D.same_status(cur.get("status"), st):
                return None
            cur["status"] = st
            return cur

        try:
            res = await self.store.mutate(PODDISRUPTIONBUDGETS, ns, name, update)
        except NotFound:
            return
        except Conflict:
            self._mark(key)
            return
        if res is not None:
            WRITES.inc()
            log.info("pdb %s/%s: %d/%d healthy (%d desired), %d disruptions allowed", ns, name, res["status"]["currentHealthy"], res["status"]["expectedPods"], res["status"]["desiredHealthy"], res["status"]["disruptionsAllowed"])
        st = (res or self.pdbs[ns][name]).get("status") or {}
        for ts in (st.get("disruptedPods") or {}).values():
            t = parse_time(ts)
            if t is not None:
                due = time.monotonic() + max((t - now).total_seconds() + D.DISRUPTED_TIMEOUT, 0) + 0.5
                heapq.heappush(self._timers, (due, key))
