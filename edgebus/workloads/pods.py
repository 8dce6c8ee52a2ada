"""Pure helpers about owners and pods (no I/O).

* owner references: :func:`owner_ref`, :func:`controller_of`, :func:`is_controlled_by`;
* pods from templates: :func:`pod_from_template`;
* pod state as controllers read it: active (not terminating, not finished), ready,
  available (ready for ``minReadySeconds``), and the order in which a controller deletes
  pods (:func:`deletion_rank`, as ``controller.ActivePods``, but a pod its unreachable
  node still runs last: :func:`is_held_offline`).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from edgebus.objects.resources import parse_time


def md(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def owner_ref(owner: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    m = md(owner)
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    refs = md(obj).get("ownerReferences")
    for ref in refs if isinstance(refs, list) else []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == md(owner).get("uid")


def pod_from_template(
    template: dict[str, Any], owner: dict[str, Any], *, name: str | None = None, generate_name: str | None = None, extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """A pod for ``owner`` from its pod template: the template's labels (plus
    ``extra_labels``), annotations and spec, owned by ``owner`` (controller reference)."""
    tmd = template.get("metadata") or {}
    meta: dict[str, Any] = {"namespace": md(owner).get("namespace") or "default", "ownerReferences": [owner_ref(owner)]}
    labels = {**(tmd.get("labels") or {}), **(extra_labels or {})}
    if labels:
        meta["labels"] = labels
    if tmd.get("annotations"):
        meta["annotations"] = dict(tmd["annotations"])
    if tmd.get("finalizers"):
        meta["finalizers"] = list(tmd["finalizers"])
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or f"{md(owner).get('name', '')}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}


# -- pod state -------------------------------------------------------------------------


def phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


#: set by cloudhub's node lifecycle on a pod whose Ready condition it turned False because
#: the pod's node became unreachable (it holds the condition the node last reported), and
#: removed when the node reports again
READY_BEFORE_UNREACHABLE = "edgebus.io/ready-before-unreachable"


def is_held_offline(pod: dict[str, Any]) -> bool:
    """An active pod not Ready only because its node is unreachable: the node keeps running
    it (edgebus evicts nothing by default), so deleting it would stop nothing before the
    node is back, and a replacement would run beside it. Controllers leave such a pod to the
    reconnect (it is deleted last on a scale-down; a rolling update goes on without it)."""
    return READY_BEFORE_UNREACHABLE in (md(pod).get("annotations") or {}) and is_active(pod) and not is_ready(pod)


def is_terminating(pod: dict[str, Any]) -> bool:
    return bool(md(pod).get("deletionTimestamp"))


def is_finished(pod: dict[str, Any]) -> bool:
    return phase(pod) in ("Succeeded", "Failed")


def is_active(pod: dict[str, Any]) -> bool:
    """Counts toward a controller's replicas: not terminating and not finished."""
    return not is_terminating(pod) and not is_finished(pod)


def ready_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c
    return None


def is_ready(pod: dict[str, Any]) -> bool:
    c = ready_condition(pod)
    return c is not None and c.get("status") == "True"


def ready_since(pod: dict[str, Any]) -> dt.datetime | None:
    c = ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime")) or parse_time(md(pod).get("creationTimestamp"))


def is_available(pod: dict[str, Any], min_ready_seconds: int, now: dt.datetime) -> bool:
    """Ready for at least ``min_ready_seconds`` (at once with 0)."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


def available_in(pod: dict[str, Any], min_ready_seconds: int, now: dt.datetime) -> float | None:
    """Seconds until a ready pod becomes available (None: not ready, or already available)."""
    if not is_ready(pod) or min_ready_seconds <= 0:
        return None
    since = ready_since(pod)
    if since is None:
        return None
    left = min_ready_seconds - (now - since).total_seconds()
    return left if left > 0 else None


def restarts(pod: dict[str, Any]) -> int:
    return sum(int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or [] if isinstance(s, dict))


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_rank(pod: dict[str, Any]) -> tuple[Any, ...]:
    """Sort key: pods first in this order are deleted first on scale-down — unscheduled
    before scheduled, Pending before Unknown before Running, not ready before ready, more
    restarts first, newer before older (``controller.ActivePods``); a pod held by its
    unreachable node (:func:`is_held_offline`) after all the others."""
    created = parse_time(md(pod).get("creationTimestamp"))
    ts = -(created.timestamp()) if created else 0.0
    return (
        1 if is_held_offline(pod) else 0,
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        _PHASE_RANK.get(phase(pod), 3),
        1 if is_ready(pod) else 0,
        -restarts(pod),
        ts,
        md(pod).get("name", ""),
    )


def node_of(pod: dict[str, Any]) -> str | None:
    """The node a pod is bound to, or the one its required node affinity names by
    ``metadata.name`` (a DaemonSet pod before it is bound)."""
    n = (pod.get("spec") or {}).get("nodeName")
    if n:
        return str(n)
    aff = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in aff.get("nodeSelectorTerms") or []:
        for f in (term or {}).get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return str(f["values"][0])
    return None


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == type_:
            return c
    return None


def set_condition(status: dict[str, Any], type_: str, cond_status: str, reason: str, message: str, now: str, *, update_time: bool = False) -> bool:
    """Set a condition in ``status.conditions`` (``lastTransitionTime`` moves only when the
    status changes); True when anything changed."""
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == type_:
            if c.get("status") == cond_status and c.get("reason") == reason and c.get("message") == message:
                return False
            if c.get("status") != cond_status:
                c["lastTransitionTime"] = now
            c.update({"status": cond_status, "reason": reason, "message": message})
            if update_time or "lastUpdateTime" in c:
                c["lastUpdateTime"] = now
            return True
    new = {"type": type_, "status": cond_status, "reason": reason, "message": message, "lastTransitionTime": now}
    if update_time:
        new["lastUpdateTime"] = now
    conds.append(new)
    return True
