"""nodegroupcontroller: KubeEdge's NodeGroups (``apps.kubeedge.io/v1alpha1``).

Level-triggered on NodeGroups and Nodes: each member node carries the label
``apps.kubeedge.io/belonging-to: <group>`` (workloads target a group with that node
selector, see edgeapplicationcontroller), nodes that left the group lose it, and the status
lists every member with its readiness and whether its selection succeeded. Rules in
:mod:`services.nodegroupcontroller.logic`.
"""

from __future__ import annotations

import logging
from typing import Any

from edgebus.errors import NotFound
from edgebus.objects import NODEGROUPS, NODES, Resource
from edgebus.objects.nodegroups import BELONGING_TO
from edgebus.runtime import Service, setup_logging
from edgebus.workloads.controller import Controller, Key
from edgebus.workloads.service import build_controller
from services.nodegroupcontroller import logic
from services.nodegroupcontroller.config import Settings

log = logging.getLogger("edgebus.nodegroupcontroller")

NAME = "nodegroupcontroller"


class NodeGroupController(Controller):
    primary = NODEGROUPS
    watched = (NODES,)
    component = "nodegroup-controller"

    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        if resource is NODEGROUPS:
            return {("", str((obj.get("metadata") or {}).get("name") or ""))}
        name = str((obj.get("metadata") or {}).get("name") or "")
        if old is not None and self.cache.get(NODES.plural, ("", name)) is not None and _membership(old) == _membership(obj):
            return set()  # a heartbeat: membership (name, labels) and readiness are the same
        out = {k for k in self.cache.keys(NODEGROUPS.plural)}
        for o in (obj, old):
            g = ((o or {}).get("metadata") or {}).get("labels", {}).get(BELONGING_TO) if o else None
            if g:
                out.add(("", g))
        return out

    def initial_keys(self) -> list[Key]:
        keys = set(self.cache.keys(NODEGROUPS.plural))
        for n in self.cache.list(NODES.plural):
            g = ((n.get("metadata") or {}).get("labels") or {}).get(BELONGING_TO)
            if g:
                keys.add(("", g))  # a group deleted while we were away: take its label off
        return sorted(keys)

    async def reconcile(self, key: Key) -> float | None:
        group = self.cache.get(NODEGROUPS.plural, key)
        nodes = {str((n.get("metadata") or {}).get("name")): n for n in self.cache.list(NODES.plural)}
        plan = logic.plan(key[1], group, nodes)
        for n in plan.label:
            await self._label(n, key[1])
        for n in plan.unlabel:
            await self._label(n, None)
        if group is not None and not (group.get("metadata") or {}).get("deletionTimestamp"):
            await self.update_status(key, plan.status)
        return None

    async def _label(self, node: str, group: str | None) -> None:
        def put(o: dict[str, Any]) -> dict[str, Any] | None:
            labels = o["metadata"].setdefault("labels", {})
            if group is None:
                if BELONGING_TO not in labels:
                    return None
                labels.pop(BELONGING_TO)
            else:
                if labels.get(BELONGING_TO) is not None:
                    return None
                labels[BELONGING_TO] = group
            return o

        try:
            changed = await self.mutate(NODES, ("", node), put)
        except NotFound:
            return
        if changed is not None:
            # our own write reaches the cache first, so its watch event shows no change:
            # the other groups learn of the node freed or taken from here
            for k in self.cache.keys(NODEGROUPS.plural):
                self.enqueue(k)


def build(settings: Settings | None = None) -> Service[NodeGroupController]:
    settings = settings or Settings()
    group = settings.nodegroupcontroller
    return build_controller(NAME, settings, group, lambda store: NodeGroupController(store, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))


def _membership(node: dict[str, Any]) -> tuple[Any, str]:
    """What a group's reconcile reads of a node: its labels and its Ready status."""
    ready = next((c.get("status") for c in (node.get("status") or {}).get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), "")
    return (node.get("metadata") or {}).get("labels"), str(ready or "")
