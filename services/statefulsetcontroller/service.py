"""statefulsetcontroller: StatefulSets' pods with stable names, in order.

Level-triggered on StatefulSets, pods and ControllerRevisions. The template's
ControllerRevision is the *update revision*; pods carry the name of the revision they were
made from (``controller-revision-hash``), and the status the current and update revisions
(``kubectl rollout status`` and ``history`` read them). Ordering, scaling and rolling update
as in :mod:`services.statefulsetcontroller.logic`. Events: ``SuccessfulCreate`` (``create
Pod web-0 in StatefulSet web successful``), ``SuccessfulDelete``, ``FailedCreate``.
PersistentVolumeClaims (``volumeClaimTemplates``) are not made: edgebus has no volumes of
that kind.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from edgebus.errors import AlreadyExists
from edgebus.events import NORMAL, WARNING
from edgebus.objects import CONTROLLERREVISIONS, PODS, STATEFULSETS, Resource
from edgebus.runtime import Service, setup_logging
from edgebus.workloads import history
from edgebus.workloads import pods as P
from edgebus.workloads.controller import Controller, Key, api_message
from edgebus.workloads.revisions import template_of
from edgebus.workloads.service import build_controller
from services.statefulsetcontroller import logic
from services.statefulsetcontroller.config import Settings

log = logging.getLogger("edgebus.statefulsetcontroller")

NAME = "statefulsetcontroller"


class StatefulSetController(Controller):
    primary = STATEFULSETS
    watched = (PODS, CONTROLLERREVISIONS)
    component = "statefulset-controller"

    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        ns = P.md(obj).get("namespace", "")
        if resource is STATEFULSETS:
            return {(ns, P.md(obj).get("name", ""))}
        out: set[Key] = set()
        for o in (obj, old):
            ref = P.controller_of(o) if o else None
            if ref and ref.get("kind") == "StatefulSet":
                out.add((ns, ref.get("name", "")))
        return out

    async def reconcile(self, key: Key) -> float | None:
        sts = self.cache.get(STATEFULSETS.plural, key)
        if sts is None or P.md(sts).get("deletionTimestamp"):
            return None
        cr, revs = await history.current_revision(self, sts)
        if cr is None:
            return 1.0
        update = P.md(cr).get("name", "")
        by_name = {P.md(r).get("name", ""): r for r in revs}
        current = str((sts.get("status") or {}).get("currentRevision") or "")
        if current not in by_name:
            current = update
        pods = self._pods(sts)
        now = dt.datetime.now(dt.UTC)
        step = logic.plan(sts, pods, current, update, now)
        for p in step.delete:
            if await self.delete(PODS, p) is not None:
                self.event(sts, NORMAL, "SuccessfulDelete", f"delete Pod {P.md(p).get('name')} in StatefulSet {key[1]} successful")
        failed = False
        for ordinal, rev in step.create:
            failed = not await self._create(sts, ordinal, by_name.get(rev) or cr) or failed
        pods = self._pods(sts)
        await history.trim(self, sts, revs, {update, current} | {logic.revision_of(p) for p in pods.values()})
        await self.update_status(key, logic.status(sts, pods, current, update, now))
        mrs = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
        waits = [w for p in pods.values() if (w := P.available_in(p, mrs, now)) is not None]
        return 5.0 if failed else (min(waits) + 0.05 if waits else None)

    def _pods(self, sts: dict[str, Any]) -> dict[int, dict[str, Any]]:
        out = {}
        for p in self.cache.owned(PODS.plural, sts):
            i = logic.ordinal_of(P.md(sts).get("name", ""), P.md(p).get("name", ""))
            if i is not None:
                out[i] = p
        return out

    async def _create(self, sts: dict[str, Any], ordinal: int, revision: dict[str, Any]) -> bool:
        name, labels, extra = logic.identity(sts, ordinal, P.md(revision).get("name", ""))
        pod = P.pod_from_template(template_of(revision), sts, name=name, extra_labels=labels)
        pod["spec"].update(extra)
        try:
            await self.create(PODS, pod)
        except AlreadyExists:
            return True  # the watch brings it (a terminating pod of that name, or a race)
        except Exception as exc:  # noqa: BLE001 - reported as the event Kubernetes records
            self.event(sts, WARNING, "FailedCreate", f"create Pod {name} in StatefulSet {P.md(sts).get('name')} failed error: {api_message(exc)}")
            return False
        self.event(sts, NORMAL, "SuccessfulCreate", f"create Pod {name} in StatefulSet {P.md(sts).get('name')} successful")
        return True


def build(settings: Settings | None = None) -> Service[StatefulSetController]:
    settings = settings or Settings()
    group = settings.statefulsetcontroller
    return build_controller(NAME, settings, group, lambda store: StatefulSetController(store, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))
