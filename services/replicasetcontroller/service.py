"""replicasetcontroller: keeps each ReplicaSet's pods at ``spec.replicas``.

Level-triggered on ReplicaSets and pods (:class:`edgebus.workloads.controller.Controller`):
pods a ReplicaSet controls (controller owner reference) count when active (not terminating,
not finished); missing ones are created from the template (``generateName: <rs>-``, in
doubling batches), extra ones deleted (unscheduled, pending and not-ready ones first).
Orphans its selector matches are adopted, owned pods it no longer matches released. Status:
``replicas``, ``fullyLabeledReplicas``, ``readyReplicas``, ``availableReplicas`` (ready
for ``minReadySeconds``), ``observedGeneration``, a ``ReplicaFailure`` condition when pods
cannot be created. Events: ``SuccessfulCreate``, ``SuccessfulDelete``, ``FailedCreate``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from edgebus.events import NORMAL, WARNING
from edgebus.objects import PODS, REPLICASETS, Resource, labelselector
from edgebus.runtime import Service, setup_logging
from edgebus.workloads import pods as P
from edgebus.workloads.controller import Controller, Key, api_message, create_many
from edgebus.workloads.service import build_controller
from services.replicasetcontroller import logic
from services.replicasetcontroller.config import Settings

log = logging.getLogger("edgebus.replicasetcontroller")

NAME = "replicasetcontroller"


class ReplicaSetController(Controller):
    primary = REPLICASETS
    watched = (PODS,)
    component = "replicaset-controller"

    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        if resource is REPLICASETS:
            return {(P.md(obj).get("namespace", ""), P.md(obj).get("name", ""))}
        out: set[Key] = set()
        ns = P.md(obj).get("namespace", "")
        for o in (obj, old):
            ref = P.controller_of(o) if o else None
            if ref and ref.get("kind") == "ReplicaSet":
                out.add((ns, ref.get("name", "")))
        if P.controller_of(obj) is None:
            for rs in self.cache.list(REPLICASETS.plural, ns):
                if labelselector.matches((rs.get("spec") or {}).get("selector"), obj):
                    out.add((ns, P.md(rs).get("name", "")))
        return out

    async def reconcile(self, key: Key) -> float | None:
        rs = self.cache.get(REPLICASETS.plural, key)
        if rs is None:
            return None
        owned = self.cache.owned(PODS.plural, rs)
        mine, adopt, release = logic.claim(rs, owned, self.cache.list(PODS.plural, key[0]))
        for p in adopt:
            await self._set_owner(p, rs)
        for p in release:
            await self._set_owner(p, None)
        mine = [p for p in mine if p not in release]
        failure = None
        if not P.md(rs).get("deletionTimestamp"):
            plan = logic.plan(rs, mine)
            if plan.create:
                failure = await self._create(rs, plan.create)
            for p in plan.delete:
                if await self.delete(PODS, p) is not None:
                    self.event(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {P.md(p).get('name')}")
        now = dt.datetime.now(dt.UTC)
        mine = [p for p in self.cache.owned(PODS.plural, rs)]
        await self.update_status(key, logic.status(rs, mine, now, failure=failure, previous=rs.get("status")))
        return logic.next_check(rs, mine, now) if failure is None else 5.0

    async def _create(self, rs: dict[str, Any], count: int) -> str | None:
        template = (rs.get("spec") or {}).get("template") or {}

        async def one() -> None:
            pod = await self.create(PODS, P.pod_from_template(template, rs))
            self.event(rs, NORMAL, "SuccessfulCreate", f"Created pod: {P.md(pod).get('name')}")

        _, errors = await create_many(one, count)
        if errors:
            msg = api_message(errors[0])
            self.event(rs, WARNING, "FailedCreate", f"Error creating: {msg}")
            return msg
        return None

    async def _set_owner(self, pod: dict[str, Any], rs: dict[str, Any] | None) -> None:
        uid = P.md(rs).get("uid") if rs else None

        def fix(p: dict[str, Any]) -> dict[str, Any] | None:
            refs = [r for r in P.md(p).get("ownerReferences") or [] if not (isinstance(r, dict) and r.get("controller"))]
            if rs is None:
                ctl = P.controller_of(p)
                if ctl is None or ctl.get("kind") != "ReplicaSet":
                    return None
            else:
                if P.controller_of(p) is not None:
                    return None
                refs.append(P.owner_ref(rs))
                if not uid:
                    return None
            p["metadata"]["ownerReferences"] = refs
            if not refs:
                p["metadata"].pop("ownerReferences")
            return p

        await self.mutate(PODS, (P.md(pod).get("namespace", ""), P.md(pod).get("name", "")), fix)


def build(settings: Settings | None = None) -> Service[ReplicaSetController]:
    settings = settings or Settings()
    group = settings.replicasetcontroller
    return build_controller(NAME, settings, group, lambda store: ReplicaSetController(store, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))


