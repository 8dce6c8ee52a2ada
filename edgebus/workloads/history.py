"""ControllerRevision history of DaemonSets and StatefulSets, through a controller's
write-through helpers: the revision of the current template (created, or an old one
brought back with the next number: a rollback), and trimming past ``revisionHistoryLimit``."""

from __future__ import annotations

from typing import Any

from edgebus.errors import AlreadyExists
from edgebus.objects import CONTROLLERREVISIONS
from edgebus.workloads import revisions as R
from edgebus.workloads.controller import Controller
from edgebus.workloads.pods import md


async def current_revision(ctl: Controller, owner: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the ControllerRevision of ``owner``'s template, all of its revisions); None when a
    name collision needs a bumped ``status.collisionCount`` first (it is written)."""
    revs = ctl.cache.owned(CONTROLLERREVISIONS.plural, owner)
    template = (owner.get("spec") or {}).get("template") or {}
    number = R.next_revision(revs)
    found = R.matching_revision(revs, template)
    ns = md(owner).get("namespace", "")
    if found is not None:
        latest = max(int(r.get("revision") or 0) for r in revs)
        if int(found.get("revision") or 0) < latest:

            def bump(r: dict[str, Any]) -> dict[str, Any]:
                r["revision"] = number
                return r

            found = await ctl.mutate(CONTROLLERREVISIONS, (ns, md(found).get("name", "")), bump) or found
        return found, ctl.cache.owned(CONTROLLERREVISIONS.plural, owner)
    collisions = int((owner.get("status") or {}).get("collisionCount") or 0)
    hash_ = R.template_hash(template, collisions)
    body = R.new_controller_revision(owner, template, number, hash_)
    try:
        cr = await ctl.create(CONTROLLERREVISIONS, body)
    except AlreadyExists:
        await ctl.update_status((ns, md(owner).get("name", "")), {**(owner.get("status") or {}), "collisionCount": collisions + 1})
        return None, revs
    return cr, ctl.cache.owned(CONTROLLERREVISIONS.plural, owner)


def hash_of(cr: dict[str, Any]) -> str:
    return str((md(cr).get("labels") or {}).get(R.CR_HASH_LABEL) or md(cr).get("name", "").rsplit("-", 1)[-1])


async def trim(ctl: Controller, owner: dict[str, Any], revs: list[dict[str, Any]], live: set[str]) -> None:
    limit = (owner.get("spec") or {}).get("revisionHistoryLimit")
    for r in R.history_to_delete(revs, 10 if limit is None else int(limit), live):
        await ctl.delete(CONTROLLERREVISIONS, r)
