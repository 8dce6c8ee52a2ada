"""edgeapplicationcontroller: KubeEdge's EdgeApplications (``apps.kubeedge.io/v1alpha1``).

Level-triggered on EdgeApplications and Deployments: for every manifest and target node group
one Deployment ``<name>-<group>`` (owned by the application, so deleting it cascades), pods
selected onto the group (``apps.kubeedge.io/belonging-to``, which nodegroupcontroller puts
on the members), the group's overriders applied (replicas, image, env, command, args,
resources; :mod:`services.edgeapplicationcontroller.logic`). A changed application updates
its Deployments (which then roll out), a group taken out of the scope loses its Deployment,
and the status lists each generated workload as ``Processing`` or ``Available``.
"""

from __future__ import annotations

import logging
from typing import Any

from edgebus.errors import AlreadyExists, Invalid
from edgebus.events import NORMAL, WARNING
from edgebus.objects import DEPLOYMENTS, EDGEAPPLICATIONS, Resource
from edgebus.runtime import Service, setup_logging
from edgebus.workloads import pods as P
from edgebus.workloads.controller import Controller, Key, api_message
from edgebus.workloads.service import build_controller
from services.edgeapplicationcontroller import logic
from services.edgeapplicationcontroller.config import Settings

log = logging.getLogger("edgebus.edgeapplicationcontroller")

NAME = "edgeapplicationcontroller"


class EdgeApplicationController(Controller):
    primary = EDGEAPPLICATIONS
    watched = (DEPLOYMENTS,)
    component = "edgeapplication-controller"

    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        ns = P.md(obj).get("namespace", "")
        if resource is EDGEAPPLICATIONS:
            return {(ns, P.md(obj).get("name", ""))}
        out: set[Key] = set()
        for o in (obj, old):
            ref = P.controller_of(o) if o else None
            if ref and ref.get("kind") == "EdgeApplication":
                out.add((ns, ref.get("name", "")))
        return out

    async def reconcile(self, key: Key) -> float | None:
        app = self.cache.get(EDGEAPPLICATIONS.plural, key)
        if app is None or P.md(app).get("deletionTimestamp"):
            return None
        rendered = logic.render(app)
        owned = {P.md(d).get("name", ""): d for d in self.cache.owned(DEPLOYMENTS.plural, app)}
        wanted = {d["metadata"]["name"] for _, _, d in rendered}
        failed = False
        for _, group, want in rendered:
            name = want["metadata"]["name"]
            cur = owned.get(name)
            try:
                if cur is None:
                    want["metadata"]["ownerReferences"] = [P.owner_ref(app)]
                    await self.create(DEPLOYMENTS, want)
                    self.event(app, NORMAL, "SuccessfulCreate", f"Created deployment {name} for node group {group}")
                elif logic.differs(cur, want):
                    body = {**cur, "spec": want["spec"], "metadata": {**cur["metadata"], "labels": want["metadata"]["labels"]}}
                    self._through(DEPLOYMENTS, await self.store.update(DEPLOYMENTS, body, namespace=key[0]))
                    self.event(app, NORMAL, "SuccessfulUpdate", f"Updated deployment {name} for node group {group}")
            except AlreadyExists:
                self.event(app, WARNING, "FailedCreate", f"deployment {name} exists and is not this application's")
                failed = True
            except Invalid as exc:  # what the overrides made is not a valid Deployment: reported, the rest goes on
                self.event(app, WARNING, "FailedApply", f"deployment {name}: {api_message(exc)}")
                failed = True
        for name, d in owned.items():
            if name not in wanted and await self.delete(DEPLOYMENTS, d, propagation="Background") is not None:
                self.event(app, NORMAL, "SuccessfulDelete", f"Deleted deployment {name}")
        current = {P.md(d).get("name", ""): d for d in self.cache.owned(DEPLOYMENTS.plural, app)}
        await self.update_status(key, logic.status(app, rendered, current))
        return 10.0 if failed else None


def build(settings: Settings | None = None) -> Service[EdgeApplicationController]:
    settings = settings or Settings()
    group = settings.edgeapplicationcontroller
    return build_controller(NAME, settings, group, lambda store: EdgeApplicationController(store, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))
