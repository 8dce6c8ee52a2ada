"""Garbage collection by owner references (pure; no I/O), as Kubernetes' garbage collector:

* an object all of whose owners are gone is deleted (``Background``: its own dependents
  follow the same way); owners that are gone are taken off an object that still has others;
* an owner deleted with ``propagationPolicy: Orphan`` (finalizer ``orphan``) has its
  reference taken off every dependent, then the finalizer removed;
* an owner deleted with ``Foreground`` (finalizer ``foregroundDeletion``) has its dependents
  deleted (in the foreground themselves when they have dependents), and keeps the finalizer
  until no dependent with ``blockOwnerDeletion`` is left.

An owner reference counts as present when an object with its uid exists; a reference to a
kind edgebus does not serve cannot be checked and is never treated as gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebus.objects import RESOURCES
from edgebus.objectstore import FOREGROUND_FINALIZER, ORPHAN_FINALIZER

Ref = tuple[str, str, str]  # (plural, namespace, name)
_SERVED = {(r.api_version, r.kind) for r in RESOURCES.values()}


def md(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def owner_refs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    refs = md(obj).get("ownerReferences")
    return [r for r in refs if isinstance(r, dict) and r.get("uid")] if isinstance(refs, list) else []


def checkable(ref: dict[str, Any]) -> bool:
    return (ref.get("apiVersion"), ref.get("kind")) in _SERVED


@dataclass
class Graph:
    """uid -> object ref, and owner uid -> dependents."""

    by_uid: dict[str, Ref] = field(default_factory=dict)
    dependents: dict[str, set[Ref]] = field(default_factory=dict)

    def observe(self, ref: Ref, obj: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        if old is not None:
            uid = md(old).get("uid")
            if uid and self.by_uid.get(uid) == ref:
                del self.by_uid[uid]
            for r in owner_refs(old):
                deps = self.dependents.get(r["uid"])
                if deps is not None:
                    deps.discard(ref)
                    if not deps:
                        del self.dependents[r["uid"]]
        if obj is not None:
            uid = md(obj).get("uid")
            if uid:
                self.by_uid[uid] = ref
            for r in owner_refs(obj):
                self.dependents.setdefault(r["uid"], set()).add(ref)

    def present(self, ref: dict[str, Any]) -> bool:
        return ref["uid"] in self.by_uid or not checkable(ref)


@dataclass
class Action:
    delete: bool = False  # delete the object itself (Background)
    drop_owners: list[str] = field(default_factory=list)  # owner uids to take off it
    orphan: list[Ref] = field(default_factory=list)  # dependents to take this owner off
    delete_dependents: list[tuple[Ref, str]] = field(default_factory=list)  # (dependent, propagation)
    remove_finalizer: str | None = None


def decide(obj: dict[str, Any], graph: Graph, get: Any) -> Action:
    """What to do about ``obj``; ``get(ref)`` returns a dependent object (or None)."""
    m = md(obj)
    uid = m.get("uid", "")
    act = Action()
    finalizers = m.get("finalizers") or []
    if m.get("deletionTimestamp"):
        deps = sorted(graph.dependents.get(uid, ()))
        if ORPHAN_FINALIZER in finalizers:
            act.orphan = deps
            act.remove_finalizer = ORPHAN_FINALIZER
            return act
        if FOREGROUND_FINALIZER in finalizers:
            blocking = False
            for d in deps:
                dep = get(d)
                if dep is None:
                    continue
                ref = next((r for r in owner_refs(dep) if r["uid"] == uid), {})
                blocking = blocking or bool(ref.get("blockOwnerDeletion"))
                if not md(dep).get("deletionTimestamp"):
                    act.delete_dependents.append((d, "Foreground" if graph.dependents.get(md(dep).get("uid", "")) else "Background"))
            if not blocking:
                act.remove_finalizer = FOREGROUND_FINALIZER
            return act
        return act
    refs = owner_refs(obj)
    if not refs:
        return act
    gone = [r["uid"] for r in refs if not graph.present(r)]
    if len(gone) == len(refs):
        act.delete = True
    elif gone:
        act.drop_owners = gone
    return act
