"""daemonsetcontroller: one pod of each DaemonSet on every node that should run it.

Level-triggered on DaemonSets, pods, Nodes and ControllerRevisions: a node that joins (a new
Node object), changes labels or taints, or goes away changes what runs where. For every node
the template's ``nodeSelector``, required node affinity and tolerations admit, one pod
``<ds>-<5 chars>`` with the required node affinity ``metadata.name In [<node>]``; with
``bind_to_node`` (the default until a scheduler binds pods) also ``spec.nodeName``. Failed
daemon pods are replaced; pods on nodes that should not run one are deleted. The template's
ControllerRevision names the pods' ``controller-revision-hash``; ``RollingUpdate`` replaces
old pods within ``maxUnavailable`` (or surges new ones within ``maxSurge``), ``OnDelete``
only when they are deleted. Events: ``SuccessfulCreate``, ``SuccessfulDelete``,
``FailedDaemonPod``, ``FailedCreate``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from edgebus.events import NORMAL, WARNING
from edgebus.objects import CONTROLLERREVISIONS, DAEMONSETS, NODES, PODS, Resource
from edgebus.runtime import Service, setup_logging
from edgebus.workloads import history
from edgebus.workloads import pods as P
from edgebus.workloads.controller import Controller, Key, api_message
from edgebus.workloads.revisions import CONTROLLER_REVISION_HASH
from edgebus.workloads.service import build_controller
from services.daemonsetcontroller import logic
from services.daemonsetcontroller.config import Settings

log = logging.getLogger("edgebus.daemonsetcontroller")

NAME = "daemonsetcontroller"


class DaemonSetController(Controller):
    primary = DAEMONSETS
    watched = (PODS, NODES, CONTROLLERREVISIONS)
    component = "daemonset-controller"

    def __init__(self, store: Any, *, bind_to_node: bool = True, **kw: Any) -> None:
        super().__init__(store, **kw)
        self.bind_to_node = bind_to_node

    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        if resource is NODES:
            if old is not None and (P.md(old).get("labels") == P.md(obj).get("labels") and (old.get("spec") or {}) == (obj.get("spec") or {})):
                return set()  # a status change of the node changes nothing here
            return {(P.md(d).get("namespace", ""), P.md(d).get("name", "")) for d in self.cache.list(DAEMONSETS.plural)}
        ns = P.md(obj).get("namespace", "")
        if resource is DAEMONSETS:
            return {(ns, P.md(obj).get("name", ""))}
        out: set[Key] = set()
        for o in (obj, old):
            ref = P.controller_of(o) if o else None
            if ref and ref.get("kind") == "DaemonSet":
                out.add((ns, ref.get("name", "")))
        return out

    async def reconcile(self, key: Key) -> float | None:
        ds = self.cache.get(DAEMONSETS.plural, key)
        if ds is None or P.md(ds).get("deletionTimestamp"):
            return None
        cr, revs = await history.current_revision(self, ds)
        if cr is None:
            return 1.0
        hash_ = history.hash_of(cr)
        template = (ds.get("spec") or {}).get("template") or {}
        tspec = template.get("spec") or {}
        nodes = {P.md(n).get("name", ""): n for n in self.cache.list(NODES.plural)}
        should = {name: logic.should_run(tspec, n) for name, n in nodes.items()}
        by_node = self._by_node(ds)
        surge = int(((ds.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate", {}).get("maxSurge") or 0) > 0
        plan = logic.node_actions(should, by_node, hash_, surging=surge)
        for p in plan.failed:
            self.event(ds, WARNING, "FailedDaemonPod", f"Found failed daemon pod {key[0]}/{P.md(p).get('name')} on node {P.node_of(p)}, will try to kill it")
        for p in plan.delete + plan.failed:
            await self._delete(ds, p)
        failure = False
        for node in plan.create:
            failure = not await self._create(ds, template, node, hash_) or failure
        now = dt.datetime.now(dt.UTC)
        roll = logic.rolling_update(ds, self._by_node(ds), should, hash_, now)
        for p in roll.delete:
            await self._delete(ds, p)
        for node in roll.surge:
            await self._create(ds, template, node, hash_)
        by_node = self._by_node(ds)
        live = {P.md(cr).get("name", "")} | {f"{key[1]}-{logic.revision_hash(p)}" for ps in by_node.values() for p in ps}
        await history.trim(self, ds, revs, live)
        await self.update_status(key, logic.status(ds, should, by_node, hash_, now))
        mrs = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        waits = [w for ps in by_node.values() for p in ps if (w := P.available_in(p, mrs, now)) is not None]
        return 5.0 if failure else (min(waits) + 0.05 if waits else None)

    def _by_node(self, ds: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for p in self.cache.owned(PODS.plural, ds):
            n = P.node_of(p)
            if n:
                out.setdefault(n, []).append(p)
        return out

    async def _create(self, ds: dict[str, Any], template: dict[str, Any], node: str, hash_: str) -> bool:
        labels = {CONTROLLER_REVISION_HASH: hash_, logic.POD_TEMPLATE_GENERATION: str(P.md(ds).get("generation") or 1)}
        pod = P.pod_from_template(template, ds, extra_labels=labels)
        pod["spec"] = logic.pod_spec_for_node(template.get("spec") or {}, node, bind=self.bind_to_node)
        try:
            out = await self.create(PODS, pod)
        except Exception as exc:  # noqa: BLE001 - reported as the event Kubernetes records
            self.event(ds, WARNING, "FailedCreate", f"Error creating: {api_message(exc)}")
            return False
        self.event(ds, NORMAL, "SuccessfulCreate", f"Created pod: {P.md(out).get('name')}")
        return True

    async def _delete(self, ds: dict[str, Any], pod: dict[str, Any]) -> None:
        if await self.delete(PODS, pod) is not None:
            self.event(ds, NORMAL, "SuccessfulDelete", f"Deleted pod: {P.md(pod).get('name')}")


def build(settings: Settings | None = None) -> Service[DaemonSetController]:
    settings = settings or Settings()
    group = settings.daemonsetcontroller
    return build_controller(NAME, settings, group, lambda store: DaemonSetController(store, bind_to_node=group.bind_to_node, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))
