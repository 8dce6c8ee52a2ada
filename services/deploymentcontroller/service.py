"""deploymentcontroller: rolls Deployments out through ReplicaSets.

Level-triggered on Deployments, ReplicaSets and pods. For each Deployment: the ReplicaSets
it controls (orphans its selector matches are adopted), the *new* one being the one whose
template (less ``pod-template-hash``) is the Deployment's, created as ``<name>-<hash>`` with
the next revision when there is none. ``RollingUpdate`` scales the new one up within
``maxSurge`` and old ones down keeping ``replicas - maxUnavailable`` available (pods an
unreachable node still runs are left out, to be replaced after its reconnect);
``Recreate`` scales old ones to 0, waits until their pods are gone, then scales the new one
up. A change of ``replicas`` is applied first, in proportion to the ReplicaSets' sizes in
the middle of a rollout (as Kubernetes); paused Deployments only scale. Empty old ReplicaSets past ``revisionHistoryLimit`` are
deleted. Status: counts, ``Available`` and ``Progressing`` (with the progress deadline).
Events: ``ScalingReplicaSet``. Rollback (``kubectl rollout undo``) is the client patching
the template back; the ReplicaSet that matches it becomes new again with the next revision.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from edgebus.errors import AlreadyExists
from edgebus.events import NORMAL
from edgebus.objects import DEPLOYMENTS, PODS, REPLICASETS, Resource, labelselector
from edgebus.runtime import Service, setup_logging
from edgebus.workloads import pods as P
from edgebus.workloads.controller import Controller, Key
from edgebus.workloads.revisions import REVISION_ANNOTATION, revision_of, template_hash
from edgebus.workloads.service import build_controller
from services.deploymentcontroller import logic
from services.deploymentcontroller.config import Settings

log = logging.getLogger("edgebus.deploymentcontroller")

NAME = "deploymentcontroller"


class DeploymentController(Controller):
    primary = DEPLOYMENTS
    watched = (REPLICASETS, PODS)
    component = "deployment-controller"

    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        ns = P.md(obj).get("namespace", "")
        if resource is DEPLOYMENTS:
            return {(ns, P.md(obj).get("name", ""))}
        out: set[Key] = set()
        if resource is PODS:
            # only Recreate waits on pods; a pod maps to its ReplicaSet's Deployment
            for o in (obj, old):
                ref = P.controller_of(o) if o else None
                if ref and ref.get("kind") == "ReplicaSet":
                    rs = self.cache.get(REPLICASETS.plural, (ns, ref.get("name", "")))
                    dref = P.controller_of(rs) if rs else None
                    if dref and dref.get("kind") == "Deployment":
                        d = self.cache.get(DEPLOYMENTS.plural, (ns, dref.get("name", "")))
                        if d is not None and logic.strategy(d) == "Recreate":  # a rolling update follows its ReplicaSets
                            out.add((ns, dref.get("name", "")))
            return out
        for o in (obj, old):
            ref = P.controller_of(o) if o else None
            if ref and ref.get("kind") == "Deployment":
                out.add((ns, ref.get("name", "")))
        if P.controller_of(obj) is None:
            for d in self.cache.list(DEPLOYMENTS.plural, ns):
                if labelselector.matches((d.get("spec") or {}).get("selector"), obj):
                    out.add((ns, P.md(d).get("name", "")))
        return out

    # -- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: Key) -> float | None:
        d = self.cache.get(DEPLOYMENTS.plural, key)
        if d is None:
            return None
        rss = await self._claim(d)
        if P.md(d).get("deletionTimestamp"):
            return await self._status(d, logic.find_new(d, rss), rss)
        new = logic.find_new(d, rss)
        old = [r for r in rss if r is not new]
        spec = d.get("spec") or {}
        if spec.get("paused") or logic.is_scaling_event(d, rss):
            # a paused Deployment only scales; a replica change is applied first (in
            # proportion, in the middle of a rollout), the rollout goes on in the next pass
            await self._apply_scale(d, logic.scale(d, new, old), rss)
            if spec.get("paused"):
                rss = self.cache.owned(REPLICASETS.plural, d)
                return await self._status(d, logic.find_new(d, rss), rss)
            return 0.0
        new, created = await self._ensure_new(d, new, old)
        if new is None:
            return 1.0  # a name collision: try again with the bumped collision count
        if logic.strategy(d) == "Recreate":
            await self._recreate(d, new, old)
        else:
            await self._rolling(d, new, old)
        await self._set_revision(d, new)
        rss = self.cache.owned(REPLICASETS.plural, d)
        new = logic.find_new(d, rss)
        for r in logic.history_to_delete(d, [r for r in rss if r is not new]):
            await self.delete(REPLICASETS, r)
        return await self._status(d, new, self.cache.owned(REPLICASETS.plural, d), created=created)

    async def _status(self, d: dict[str, Any], new: dict[str, Any] | None, rss: list[dict[str, Any]], *, created: str | None = None) -> float | None:
        st, again = logic.status(d, new, rss, dt.datetime.now(dt.UTC), created=created)
        await self.update_status((P.md(d).get("namespace", ""), P.md(d).get("name", "")), st)
        return again

    async def _claim(self, d: dict[str, Any]) -> list[dict[str, Any]]:
        ns = P.md(d).get("namespace", "")
        sel = (d.get("spec") or {}).get("selector")
        owned = self.cache.owned(REPLICASETS.plural, d)
        if P.md(d).get("deletionTimestamp"):
            return owned
        for rs in self.cache.list(REPLICASETS.plural, ns):
            if P.controller_of(rs) is None and not P.md(rs).get("deletionTimestamp") and labelselector.matches(sel, rs):

                def adopt(r: dict[str, Any]) -> dict[str, Any] | None:
                    if P.controller_of(r) is not None:
                        return None
                    r["metadata"]["ownerReferences"] = [*(r["metadata"].get("ownerReferences") or []), P.owner_ref(d)]
                    return r

                await self.mutate(REPLICASETS, (ns, P.md(rs).get("name", "")), adopt)
        return self.cache.owned(REPLICASETS.plural, d)

    async def _ensure_new(self, d: dict[str, Any], new: dict[str, Any] | None, old: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str | None]:
        """The new ReplicaSet (created if missing; an existing one gets the next revision)."""
        revision = logic.max_old_revision(old) + 1
        surge, _ = logic.surge_and_unavailable(d)
        ns = P.md(d).get("namespace", "")
        if new is not None:
            ann = logic.revision_annotations(new, d, revision)
            if ann is not None:

                def put(r: dict[str, Any]) -> dict[str, Any]:
                    r["metadata"]["annotations"] = ann
                    return r

                new = await self.mutate(REPLICASETS, (ns, P.md(new).get("name", "")), put) or new
            return new, None
        collisions = int((d.get("status") or {}).get("collisionCount") or 0)
        hash_ = template_hash((d.get("spec") or {}).get("template") or {}, collisions)
        count = 0
        if logic.strategy(d) == "RollingUpdate":
            all_rs = [logic.rs_state(r) for r in old]
            count = logic.new_rs_replicas(logic.replicas(d), surge, logic.RS("", 0, 0), all_rs)
        elif not any(logic.rs_state(r).replicas for r in old):
            count = 0  # Recreate scales up once the old pods are gone
        body = logic.new_replicaset(d, hash_, revision, count, surge)
        try:
            rs = await self.create(REPLICASETS, body)
        except AlreadyExists:
            existing = self.cache.get(REPLICASETS.plural, (ns, body["metadata"]["name"]))
            if existing is not None and P.is_controlled_by(existing, d) and logic.same_template((existing.get("spec") or {}).get("template") or {}, body["spec"]["template"]):
                return existing, None
            await self.update_status((ns, P.md(d).get("name", "")), {**(d.get("status") or {}), "collisionCount": collisions + 1})
            return None, None
        if count:
            self.event(d, NORMAL, "ScalingReplicaSet", f"Scaled up replica set {P.md(rs).get('name')} to {count} from 0")
        return rs, P.md(rs).get("name")

    async def _set_revision(self, d: dict[str, Any], new: dict[str, Any]) -> None:
        want = str(revision_of(new))
        if (P.md(d).get("annotations") or {}).get(REVISION_ANNOTATION) == want:
            return

        def put(o: dict[str, Any]) -> dict[str, Any] | None:
            ann = o["metadata"].setdefault("annotations", {})
            if ann.get(REVISION_ANNOTATION) == want:
                return None
            ann[REVISION_ANNOTATION] = want
            return o

        await self.mutate(DEPLOYMENTS, (P.md(d).get("namespace", ""), P.md(d).get("name", "")), put)

    async def _scale(self, d: dict[str, Any], rs: dict[str, Any], count: int) -> None:
        cur = int((rs.get("spec") or {}).get("replicas") or 0)
        surge, _ = logic.surge_and_unavailable(d)
        ann = {logic.DESIRED_REPLICAS: str(logic.replicas(d)), logic.MAX_REPLICAS: str(logic.replicas(d) + surge)}
        if cur == count and all((P.md(rs).get("annotations") or {}).get(k) == v for k, v in ann.items()):
            return

        def put(r: dict[str, Any]) -> dict[str, Any]:
            changed = int(r["spec"].get("replicas") or 0) != count
            r["spec"]["replicas"] = count
            r["metadata"]["annotations"] = {**(r["metadata"].get("annotations") or {}), **ann}
            if changed:
                r["metadata"]["generation"] = int(r["metadata"].get("generation") or 1) + 1
            return r

        await self.mutate(REPLICASETS, (P.md(rs).get("namespace", ""), P.md(rs).get("name", "")), put)
        if cur != count:
            how = "up" if count > cur else "down"
            self.event(d, NORMAL, "ScalingReplicaSet", f"Scaled {how} replica set {P.md(rs).get('name')} to {count} from {cur}")

    async def _rolling(self, d: dict[str, Any], new: dict[str, Any], old: list[dict[str, Any]]) -> None:
        desired = logic.replicas(d)
        surge, unavailable = logic.surge_and_unavailable(d)
        new_s = logic.rs_state(new, self.cache.owned(PODS.plural, new))
        target, downs = logic.rolling_step(desired, surge, unavailable, new_s, [logic.rs_state(r, self.cache.owned(PODS.plural, r)) for r in old])
        if target != new_s.replicas:
            await self._scale(d, new, target)
        for r in old:
            if P.md(r).get("name") in downs:
                await self._scale(d, r, downs[P.md(r).get("name", "")])

    async def _recreate(self, d: dict[str, Any], new: dict[str, Any], old: list[dict[str, Any]]) -> None:
        for r in old:
            if logic.rs_state(r).replicas:
                await self._scale(d, r, 0)
        for r in old:
            if any(not P.is_finished(p) for p in self.cache.owned(PODS.plural, r)):
                return  # old pods still running or terminating
        await self._scale(d, new, logic.replicas(d))

    async def _apply_scale(self, d: dict[str, Any], sizes: dict[str, int], rss: list[dict[str, Any]]) -> None:
        by_name = {P.md(r).get("name", ""): r for r in rss}
        for name, size in sizes.items():
            await self._scale(d, by_name[name], size)
        for r in rss:  # the others are now sized for this replica count too
            if P.md(r).get("name") not in sizes and logic.rs_state(r).replicas > 0:
                await self._scale(d, r, logic.rs_state(r).replicas)


def build(settings: Settings | None = None) -> Service[DeploymentController]:
    settings = settings or Settings()
    group = settings.deploymentcontroller
    return build_controller(NAME, settings, group, lambda store: DeploymentController(store, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))
