"""garbagecollector: deletes what lost its owners, and carries out ``Foreground`` and
``Orphan`` deletions (``kubectl delete --cascade=foreground|orphan``).

Level-triggered on every served resource but Events (they neither own nor are owned): it
keeps a graph of uids and owner references (:class:`services.garbagecollector.logic.Graph`)
and reconciles an object when it changes, when one of its owners goes, or when one of its
dependents changes (a foreground deletion waiting for them). Rules in
:mod:`services.garbagecollector.logic`. Deleting with ``Background`` (kubectl's default) or
without a policy removes the owner at once; its dependents are then deleted here.
"""

from __future__ import annotations

import logging
from typing import Any

from edgebus.errors import NotFound
from edgebus.objects import EVENTS, PODS, RESOURCES, Resource
from edgebus.runtime import Service, setup_logging
from edgebus.workloads.controller import Controller, Key
from edgebus.workloads.service import build_controller
from services.garbagecollector import logic
from services.garbagecollector.config import Settings

log = logging.getLogger("edgebus.garbagecollector")

NAME = "garbagecollector"
WATCHED = tuple(r for r in RESOURCES.values() if r is not EVENTS)


def _key(ref: logic.Ref) -> Key:
    return (ref[0], f"{ref[1]}/{ref[2]}")


def _ref(key: Key) -> logic.Ref:
    ns, _, name = key[1].partition("/")
    return (key[0], ns, name)


class GarbageCollector(Controller):
    primary = PODS  # unused: keys are (plural, "namespace/name") of any resource
    watched = WATCHED
    component = "garbage-collector"

    def __init__(self, store: Any, **kw: Any) -> None:
        super().__init__(store, **kw)
        self.graph = logic.Graph()

    async def run(self) -> None:
        self.graph = logic.Graph()
        await super().run()

    def _get(self, ref: logic.Ref) -> dict[str, Any] | None:
        return self.cache.get(ref[0], (ref[1], ref[2]))

    def observe(self, resource: Resource, obj: dict[str, Any], revision: int, *, deleted: bool) -> None:
        ref = (resource.plural, str(logic.md(obj).get("namespace") or ""), str(logic.md(obj).get("name") or ""))
        old = self.cache.observe(resource.plural, obj, revision, deleted=deleted)
        now = self.cache.get(resource.plural, (ref[1], ref[2]))
        if now is old and not deleted:
            return  # stale
        self.graph.observe(ref, now, old)
        if not self.synced:
            return
        keys: set[Key] = {_key(ref)} if now is not None else set()
        for o in (now, old):
            for r in logic.owner_refs(o) if o else []:
                owner = self.graph.by_uid.get(r["uid"])
                if owner is not None:
                    keys.add(_key(owner))
        if now is None and old is not None:
            for d in self.graph.dependents.get(str(logic.md(old).get("uid") or ""), ()):
                keys.add(_key(d))
        for k in keys:
            self.enqueue(k)

    def initial_keys(self) -> list[Key]:
        out = []
        for plural, objs in self.cache.objects.items():
            for (ns, name), o in objs.items():
                m = logic.md(o)
                if m.get("ownerReferences") or (m.get("deletionTimestamp") and m.get("finalizers")):
                    out.append(_key((plural, ns, name)))
        return out

    def _through(self, resource: Resource, obj: dict[str, Any], *, deleted: bool = False) -> None:
        self.observe(resource, obj, int(logic.md(obj).get("resourceVersion") or 0), deleted=deleted)

    async def reconcile(self, key: Key) -> float | None:
        ref = _ref(key)
        obj = self._get(ref)
        if obj is None:
            return None
        resource = RESOURCES[ref[0]]
        act = logic.decide(obj, self.graph, self._get)
        uid = logic.md(obj).get("uid", "")
        for d in act.orphan:
            await self._drop(d, [uid])
        for d, policy in act.delete_dependents:
            dep = self._get(d)
            if dep is not None:
                log.info("deleting %s %s/%s (its owner %s %s is deleted in the foreground)", d[0], d[1], d[2], ref[0], ref[2])
                await self.delete(RESOURCES[d[0]], dep, propagation=policy)
        if act.remove_finalizer:
            fin = act.remove_finalizer

            def unfinalize(o: dict[str, Any]) -> dict[str, Any] | None:
                fins = o["metadata"].get("finalizers") or []
                if fin not in fins:
                    return None
                o["metadata"]["finalizers"] = [f for f in fins if f != fin]
                return o

            try:
                await self.mutate(resource, (ref[1], ref[2]), unfinalize)
            except NotFound:
                pass
        if act.drop_owners:
            await self._drop(ref, act.drop_owners)
        if act.delete:
            log.info("deleting %s %s/%s: its owners are gone", ref[0], ref[1], ref[2])
            await self.delete(resource, obj, propagation="Background")
        return None

    async def _drop(self, ref: logic.Ref, uids: list[str]) -> None:
        def drop(o: dict[str, Any]) -> dict[str, Any] | None:
            refs = o["metadata"].get("ownerReferences") or []
            keep = [r for r in refs if r.get("uid") not in uids]
            if len(keep) == len(refs):
                return None
            if keep:
                o["metadata"]["ownerReferences"] = keep
            else:
                o["metadata"].pop("ownerReferences", None)
            return o

        try:
            await self.mutate(RESOURCES[ref[0]], (ref[1], ref[2]), drop)
        except NotFound:
            pass


def build(settings: Settings | None = None) -> Service[GarbageCollector]:
    settings = settings or Settings()
    group = settings.garbagecollector
    return build_controller(NAME, settings, group, lambda store: GarbageCollector(store, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))
