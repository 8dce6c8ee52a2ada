"""The level-triggered controller runtime every workload controller runs on.

A :class:`Controller` lists and then watches its resources in the objects bucket (one
ordered watch; a bookmark marks the end of the initial list), keeps them in a
:class:`Cache`, and turns every change into the *keys* (namespace, name) of the primary
objects it affects (:meth:`Controller.keys_for`). A work queue runs
:meth:`Controller.reconcile` for each key — never twice at once for the same key — with
``workers`` keys in flight; ``reconcile`` may ask to be run again after a delay (a progress
deadline, a pod becoming available, a cron schedule), and a failing one is retried with
back-off. Nothing is held only in memory: after a restart (or on a standby that takes the
lease over) the list rebuilds the cache and every primary object is reconciled again.

Writes go through the object store (compare-and-set) and are written through to the cache at
once with their revision, so a reconcile that runs before the watch has delivered its own
write sees it (no duplicate pods); the watch then skips events older than what the cache
holds.
"""

from __future__ import annotations

import builtins
import asyncio
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

from edgebus import clock
from edgebus.backoff import delay_for
from edgebus.errors import AlreadyExists, ApiError, Conflict, NotFound
from edgebus.events import EventRecorder
from edgebus.objects import Resource, rv_of
from edgebus.objectstore import BOOKMARK, DELETED, ObjectStore

log = logging.getLogger("edgebus.workloads")

Key = tuple[str, str]  # (namespace, name) of a primary object


def _nsname(obj: dict[str, Any]) -> Key:
    m = obj.get("metadata") or {}
    return (str(m.get("namespace") or ""), str(m.get("name") or ""))


class Cache:
    """Objects by resource and (namespace, name), with an index of controller owners."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[Key, dict[str, Any]]] = {}
        self._revs: dict[tuple[str, Key], int] = {}
        self._by_owner: dict[tuple[str, str], set[Key]] = {}

    def observe(self, plural: str, obj: dict[str, Any], revision: int, *, deleted: bool) -> dict[str, Any] | None:
        """Record a state of an object; returns the previous one (None if it was absent).
        A state older than the one held is ignored (returns the held one unchanged)."""
        key = _nsname(obj)
        held = self._revs.get((plural, key), 0)
        bucket = self.objects.setdefault(plural, {})
        old = bucket.get(key)
        if revision and revision < held:
            return old
        self._revs[(plural, key)] = revision
        if old is not None:
            self._unindex(plural, key, old)
        if deleted:
            bucket.pop(key, None)
        else:
            bucket[key] = obj
            self._index(plural, key, obj)
        return old

    def _owner_uid(self, obj: dict[str, Any]) -> str | None:
        refs = (obj.get("metadata") or {}).get("ownerReferences")
        for ref in refs if isinstance(refs, list) else []:
            if isinstance(ref, dict) and ref.get("controller") and ref.get("uid"):
                return str(ref["uid"])
        return None

    def _index(self, plural: str, key: Key, obj: dict[str, Any]) -> None:
        uid = self._owner_uid(obj)
        if uid:
            self._by_owner.setdefault((plural, uid), set()).add(key)

    def _unindex(self, plural: str, key: Key, obj: dict[str, Any]) -> None:
        uid = self._owner_uid(obj)
        if uid:
            s = self._by_owner.get((plural, uid))
            if s is not None:
                s.discard(key)
                if not s:
                    self._by_owner.pop((plural, uid), None)

    def get(self, plural: str, key: Key) -> dict[str, Any] | None:
        return self.objects.get(plural, {}).get(key)

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        items = self.objects.get(plural, {})
        return [o for k, o in items.items() if namespace is None or k[0] == namespace]

    def keys(self, plural: str) -> builtins.list[Key]:
        return list(self.objects.get(plural, {}))

    def owned(self, plural: str, owner: dict[str, Any]) -> builtins.list[dict[str, Any]]:
        """Objects of ``plural`` whose controller reference is ``owner`` (by uid)."""
        uid = str((owner.get("metadata") or {}).get("uid") or "")
        bucket = self.objects.get(plural, {})
        return [bucket[k] for k in sorted(self._by_owner.get((plural, uid), ())) if k in bucket]


class Controller:
    """Base class: subclasses set ``primary`` and ``watched`` and implement
    :meth:`keys_for` and :meth:`reconcile`."""

    #: the resource whose objects are the keys
    primary: Resource
    #: every resource the controller reads (the primary included)
    watched: tuple[Resource, ...] = ()
    #: the component name in Events (``deployment-controller``, ...)
    component: str = ""

    def __init__(self, store: ObjectStore, *, workers: int = 4, max_backoff: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.workers = workers
        self.max_backoff = max_backoff
        self.clock = clock
        self.recorder = EventRecorder(store, self.component)
        self.cache = Cache()
        self.synced = False
        self._due: dict[Key, float] = {}
        self._busy: set[Key] = set()
        self._again: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._wake = asyncio.Event()
        self._events: set[asyncio.Task[None]] = set()

    # -- to implement ------------------------------------------------------------------
    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        """The primary keys a change of ``obj`` (``old``: its previous state) may affect."""
        return {_nsname(obj)} if resource is self.primary else set()

    async def reconcile(self, key: Key) -> float | None:
        """Make the world match the primary object ``key``; return seconds after which to
        run again (None: only when something changes)."""
        raise NotImplementedError

    def initial_keys(self) -> list[Key]:
        """What to reconcile once the initial list is in (every primary object)."""
        return self.cache.keys(self.primary.plural)

    # -- queue ------------------------------------------------------------------------
    def enqueue(self, key: Key, delay: float = 0.0) -> None:
        due = self.clock() + max(delay, 0.0)
        if key in self._busy:
            if delay <= 0:
                self._again.add(key)
            else:
                self._due[key] = min(self._due.get(key, due), due)
            return
        self._due[key] = min(self._due.get(key, due), due)
        self._wake.set()

    def pending(self) -> int:
        return len(self._due) + len(self._busy)

    async def _worker(self) -> None:
        while True:
            now = self.clock()
            ready = [k for k, t in self._due.items() if t <= now and k not in self._busy]
            if not ready:
                self._wake.clear()
                future = [t for k, t in self._due.items() if k not in self._busy]
                timeout = max(min(future) - now, 0.0) if future else None
                await clock.wait_set(self._wake, timeout)
                continue
            key = min(ready, key=lambda k: self._due[k])
            del self._due[key]
            self._busy.add(key)
            try:
                delay = await self.reconcile(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except (Conflict, AlreadyExists, NotFound) as exc:
                # a write raced another writer; the watch brings the state that won
                log.info("%s %s/%s: %s; again shortly", self.component, key[0], key[1], exc)
                delay = 0.2
            except Exception as exc:
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                delay = delay_for(n - 1, 0.5, self.max_backoff)
                log.warning("%s %s/%s failed (%s: %s); retrying in %.1fs", self.component, key[0], key[1], type(exc).__name__, exc, delay, exc_info=n == 1)
            finally:
                self._busy.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.enqueue(key)
            elif delay is not None:
                self.enqueue(key, delay)

    # -- running ----------------------------------------------------------------------
    async def run(self) -> None:
        """List, watch and reconcile until cancelled (the leader's work)."""
        self.synced = False
        self.cache = Cache()
        self._due.clear()
        self._again.clear()
        self._failures.clear()
        async with asyncio.TaskGroup() as tg:
            for i in range(self.workers):
                tg.create_task(self._worker(), name=f"{self.component}:worker-{i}")
            tg.create_task(self._watch(), name=f"{self.component}:watch")

    async def _watch(self) -> None:
        resources = list(dict.fromkeys((self.primary, *self.watched)))
        async with aclosing(self.store.watch(resources, bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    keys = self.initial_keys()
                    for key in keys:
                        self.enqueue(key)
                    self.synced = True
                    log.info("%s: initial list done: %d to reconcile", self.component, len(keys))
                    continue
                self.observe(ev.resource, ev.object, ev.revision, deleted=ev.type == DELETED)

    def observe(self, resource: Resource, obj: dict[str, Any], revision: int, *, deleted: bool) -> None:
        old = self.cache.observe(resource.plural, obj, revision, deleted=deleted)
        if self.synced:
            try:
                keys = self.keys_for(resource, obj, old)
            except Exception:  # an object no reconcile can make sense of never stops the watch
                log.warning("%s: cannot map %s %s", self.component, resource.plural, _nsname(obj), exc_info=True)
                return
            for key in keys:
                self.enqueue(key)

    # -- writes (written through to the cache) ---------------------------------------------
    def _through(self, resource: Resource, obj: dict[str, Any], *, deleted: bool = False) -> None:
        self.cache.observe(resource.plural, obj, rv_of(obj), deleted=deleted)

    async def create(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        out = await self.store.create(resource, obj, namespace=(obj.get("metadata") or {}).get("namespace"))
        self._through(resource, out)
        return out

    async def mutate(self, resource: Resource, key: Key, fn: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any] | None:
        out = await self.store.mutate(resource, key[0] or None, key[1], fn)
        if out is not None:
            gone = bool((out.get("metadata") or {}).get("deletionTimestamp")) and not (out.get("metadata") or {}).get("finalizers") and resource.plural != "pods"
            self._through(resource, out, deleted=gone)
        return out

    async def delete(self, resource: Resource, obj: dict[str, Any], *, propagation: str | None = None) -> dict[str, Any] | None:
        """Delete ``obj`` (precondition: its uid); None when it was already gone."""
        m = obj.get("metadata") or {}
        try:
            out = await self.store.delete(resource, m.get("namespace") or None, m.get("name", ""), uid=m.get("uid"), propagation=propagation)
        except NotFound:
            self._through(resource, obj, deleted=True)
            return None
        # graceful (a pod on its node) or deferred (finalizers): still there, terminating
        keeps = resource.plural == "pods" or bool((out.get("metadata") or {}).get("finalizers"))
        self._through(resource, out, deleted=not keeps)
        return out

    async def update_status(self, key: Key, status: dict[str, Any]) -> None:
        """Write ``status`` of the primary object when it differs from the cached one."""
        cur = self.cache.get(self.primary.plural, key)
        if cur is not None and (cur.get("status") or {}) == status:
            return

        def put(o: dict[str, Any]) -> dict[str, Any] | None:
            if (o.get("status") or {}) == status:
                return None
            o["status"] = status
            return o

        try:
            await self.mutate(self.primary, key, put)
        except NotFound:
            pass

    # -- events -----------------------------------------------------------------------
    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an Event in the background (never delays or fails the reconcile)."""
        if len(self._events) >= 256:
            log.info("event %s dropped: too many in flight", reason)
            return
        t = asyncio.get_running_loop().create_task(self.recorder.record(obj, type_, reason, message))
        self._events.add(t)
        t.add_done_callback(self._events.discard)


async def create_many(create: Callable[[], Any], count: int, *, first_batch: int = 1) -> tuple[int, list[BaseException]]:
    """Run ``count`` creates in batches that double while they succeed (Kubernetes'
    "slow start": a template that cannot be created fails once, not ``count`` times).
    Returns (successes, errors)."""
    errors: builtins.list[BaseException] = []
    done, batch = 0, first_batch
    while done + len(errors) < count and not errors:
        n = min(batch, count - done)
        results = await asyncio.gather(*(create() for _ in range(n)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                if isinstance(r, asyncio.CancelledError):
                    raise r
                errors.append(r)
            else:
                done += 1
        batch *= 2
    return done, errors


def api_message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ApiError) else str(exc)
