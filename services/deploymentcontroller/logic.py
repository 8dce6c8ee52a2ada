"""A Deployment's rollout, as Kubernetes' deployment controller computes it (pure; no I/O).

* :func:`fenceposts`: ``maxSurge`` / ``maxUnavailable`` against the replicas (surge rounds
  up, unavailability down; both 0 makes unavailability 1);
* rolling update: :func:`new_rs_replicas` (scale the new ReplicaSet up within the surge)
  and :func:`scale_down_old` (scale old ones down, unhealthy pods first, never below
  ``replicas - maxUnavailable`` available); :func:`rolling_step` does both over the pods
  that are not held by an unreachable node (those wait for their node's reconnect);
* revisions: the new ReplicaSet's revision is one more than every old one's; a ReplicaSet
  that becomes new again (a rollback) takes that number and keeps its old ones in
  ``deployment.kubernetes.io/revision-history``;
* status and the ``Available`` / ``Progressing`` conditions with Kubernetes' reasons.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any

from edgebus.objects.resources import parse_time
from edgebus.objects.workloads import drop_nulls, int_or_percent
from edgebus.workloads import pods as P
from edgebus.workloads.revisions import POD_TEMPLATE_HASH, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, revision_of

DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
#: Deployment annotations not copied to its ReplicaSets
NOT_COPIED = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}


@dataclass(frozen=True, slots=True)
class RS:
    """What the rollout math needs of one ReplicaSet."""

    name: str
    replicas: int  # spec.replicas
    available: int  # status.availableReplicas
    created: str = ""  # creationTimestamp, for "oldest first"
    held: int = 0  # its pods an unreachable node still runs (P.is_held_offline)


def rs_state(rs: dict[str, Any], pods: list[dict[str, Any]] | None = None) -> RS:
    """``pods``: the ReplicaSet's pods, to count those held by an unreachable node."""
    held = sum(1 for p in pods or [] if P.is_held_offline(p))
    return RS(
        P.md(rs).get("name", ""),
        int((rs.get("spec") or {}).get("replicas") or 0),
        int((rs.get("status") or {}).get("availableReplicas") or 0),
        str(P.md(rs).get("creationTimestamp") or ""),
        held,
    )


def replicas(d: dict[str, Any]) -> int:
    return int((d.get("spec") or {}).get("replicas") or 0)


def strategy(d: dict[str, Any]) -> str:
    return str(((d.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate")


def fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    surge = int_or_percent(max_surge, desired, round_up=True)
    unavailable = int_or_percent(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def surge_and_unavailable(d: dict[str, Any]) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) resolved; (0, 0) unless RollingUpdate."""
    n = replicas(d)
    if strategy(d) != "RollingUpdate" or n == 0:
        return 0, 0
    ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    surge, unavailable = fenceposts(ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), n)
    return surge, min(unavailable, n)


def new_rs_replicas(desired: int, max_surge: int, new: RS, all_rs: list[RS]) -> int:
    """The new ReplicaSet's replicas for this step of a rolling update."""
    if new.replicas >= desired:
        return desired
    current = sum(r.replicas for r in all_rs)
    max_total = desired + max_surge
    if current >= max_total:
        return new.replicas
    return new.replicas + min(max_total - current, desired - new.replicas)


def scale_down_old(desired: int, max_unavailable: int, new: RS | None, old: list[RS]) -> dict[str, int]:
    """Old ReplicaSets' new replicas for this step (only those that change)."""
    if sum(r.replicas for r in old) == 0:
        return {}
    all_rs = [*old, *([new] if new else [])]
    min_available = desired - max_unavailable
    new_unavailable = (new.replicas - new.available) if new else 0
    max_scaled_down = sum(r.replicas for r in all_rs) - min_available - new_unavailable
    if max_scaled_down <= 0:
        return {}
    out: dict[str, int] = {}
    cur = {r.name: r.replicas for r in old}
    ordered = sorted(old, key=lambda r: (r.created, r.name))
    # unhealthy pods of old ReplicaSets first: they do not count towards availability
    cleaned = 0
    for r in ordered:
        if cleaned >= max_scaled_down:
            break
        if cur[r.name] == 0 or cur[r.name] <= r.available:
            continue
        n = min(max_scaled_down - cleaned, cur[r.name] - r.available)
        cur[r.name] -= n
        out[r.name] = cur[r.name]
        cleaned += n
    # then available ones, as long as availability stays at minAvailable
    available = sum(r.available for r in all_rs)
    if available > min_available:
        budget = available - min_available
        for r in ordered:
            if budget <= 0:
                break
            if cur[r.name] == 0:
                continue
            n = min(cur[r.name], budget)
            cur[r.name] -= n
            out[r.name] = cur[r.name]
            budget -= n
    return out


def rolling_step(desired: int, max_surge: int, max_unavailable: int, new: RS, old: list[RS]) -> tuple[int, dict[str, int]]:
    """One step of a rolling update: the new ReplicaSet's replicas and the old ones' that
    change. Pods held by an unreachable node are left out of the sums: they are not
    available, but deleting them stops nothing until the node is back (and a replacement
    would run beside them), so the rollout proceeds over the others — ``maxSurge`` and
    ``maxUnavailable`` (of the whole Deployment's replicas) applied to the reachable share —
    and each ReplicaSet keeps its held pods on top. Once the node is back its pods count
    again and the rollout replaces them as any other. Without held pods this is exactly
    :func:`new_rs_replicas` then :func:`scale_down_old`."""

    def reachable(r: RS) -> RS:
        held = min(r.held, r.replicas)
        # the ReplicaSet's status may not count the held pods out yet
        return RS(r.name, r.replicas - held, min(r.available, r.replicas - held) if held else r.available, r.created)

    def held_of(r: RS) -> int:
        return min(r.held, r.replicas)

    held = held_of(new) + sum(held_of(r) for r in old)
    want = max(desired - held, 0)
    new_r, old_r = reachable(new), [reachable(r) for r in old]
    target = new_rs_replicas(want, max_surge, new_r, [new_r, *old_r]) + held_of(new)
    stepped = RS(new.name, target - held_of(new), new_r.available, new.created)
    downs = scale_down_old(want, max_unavailable, stepped, old_r)
    by_name = {r.name: r for r in old}
    return target, {k: v + held_of(by_name[k]) for k, v in downs.items()}


# -- ReplicaSets -----------------------------------------------------------------------


def template_without_hash(rs: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return t


def same_template(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def norm(t: dict[str, Any]) -> dict[str, Any]:
        t = drop_nulls(copy.deepcopy(t or {}))
        m = t.setdefault("metadata", {})
        labels = {k: v for k, v in (m.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
        m["labels"] = labels
        m["annotations"] = m.get("annotations") or {}
        return t

    return norm(a) == norm(b)


def find_new(d: dict[str, Any], rss: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ReplicaSet whose template is the Deployment's (the oldest if several)."""
    template = (d.get("spec") or {}).get("template") or {}
    same = [r for r in rss if same_template((r.get("spec") or {}).get("template") or {}, template)]
    return min(same, key=lambda r: (str(P.md(r).get("creationTimestamp") or ""), P.md(r).get("name", ""))) if same else None


def copied_annotations(d: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (P.md(d).get("annotations") or {}).items() if k not in NOT_COPIED}


def new_replicaset(d: dict[str, Any], hash_: str, revision: int, count: int, max_surge: int) -> dict[str, Any]:
    spec = d.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    tmd = template.setdefault("metadata", {})
    tmd["labels"] = {**(tmd.get("labels") or {}), POD_TEMPLATE_HASH: hash_}
    sel = copy.deepcopy(spec.get("selector") or {})
    sel["matchLabels"] = {**(sel.get("matchLabels") or {}), POD_TEMPLATE_HASH: hash_}
    annotations = {
        **copied_annotations(d),
        REVISION_ANNOTATION: str(revision),
        DESIRED_REPLICAS: str(replicas(d)),
        MAX_REPLICAS: str(replicas(d) + max_surge),
    }
    rs_spec: dict[str, Any] = {"replicas": count, "selector": sel, "template": template}
    if spec.get("minReadySeconds"):
        rs_spec["minReadySeconds"] = spec["minReadySeconds"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{P.md(d).get('name')}-{hash_}",
            "namespace": P.md(d).get("namespace") or "default",
            "labels": dict(tmd["labels"]),
            "annotations": annotations,
            "ownerReferences": [P.owner_ref(d)],
        },
        "spec": rs_spec,
    }


def max_old_revision(old: list[dict[str, Any]]) -> int:
    return max((revision_of(r) for r in old), default=0)


def revision_annotations(rs: dict[str, Any], d: dict[str, Any], revision: int) -> dict[str, str] | None:
    """The annotations the (existing) new ReplicaSet should carry: the new revision (its
    old one moved to the history) and the Deployment's annotations; None if unchanged."""
    ann = dict(P.md(rs).get("annotations") or {})
    want = {**ann, **copied_annotations(d)}
    old = revision_of(rs)
    if old < revision:
        want[REVISION_ANNOTATION] = str(revision)
        if old:
            hist = [h for h in str(ann.get(REVISION_HISTORY_ANNOTATION) or "").split(",") if h]
            want[REVISION_HISTORY_ANNOTATION] = ",".join([*hist, str(old)])
    return None if want == ann else want


def history_to_delete(d: dict[str, Any], old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Old, empty ReplicaSets past ``revisionHistoryLimit`` (oldest revision first)."""
    limit = (d.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    empty = [
        r
        for r in old
        if int((r.get("spec") or {}).get("replicas") or 0) == 0 and int((r.get("status") or {}).get("replicas") or 0) == 0 and not P.md(r).get("deletionTimestamp")
    ]
    empty.sort(key=lambda r: (revision_of(r), str(P.md(r).get("creationTimestamp") or "")))
    excess = len(empty) - limit
    return empty[:excess] if excess > 0 else []


# -- status ----------------------------------------------------------------------------


def stamp(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def counts(d: dict[str, Any], new: dict[str, Any] | None, rss: list[dict[str, Any]]) -> dict[str, Any]:
    def s(r: dict[str, Any], k: str) -> int:
        return int((r.get("status") or {}).get(k) or 0)

    available = sum(s(r, "availableReplicas") for r in rss)
    out: dict[str, Any] = {
        "observedGeneration": int(P.md(d).get("generation") or 1),
        "replicas": sum(s(r, "replicas") for r in rss),
        "updatedReplicas": s(new, "replicas") if new else 0,
        "readyReplicas": sum(s(r, "readyReplicas") for r in rss),
        "availableReplicas": available,
    }
    unavailable = max(replicas(d) - available, 0)
    if unavailable:
        out["unavailableReplicas"] = unavailable
    return out


def complete(d: dict[str, Any], st: dict[str, Any]) -> bool:
    n = replicas(d)
    return st["updatedReplicas"] == n and st["replicas"] == n and st["availableReplicas"] == n and st["observedGeneration"] >= int(P.md(d).get("generation") or 1)


def progressing(d: dict[str, Any], st: dict[str, Any]) -> bool:
    old = d.get("status") or {}

    def g(k: str) -> int:
        return int(old.get(k) or 0)

    old_pending = g("replicas") - g("updatedReplicas")
    new_pending = st["replicas"] - st["updatedReplicas"]
    return st["updatedReplicas"] > g("updatedReplicas") or new_pending < old_pending or st["readyReplicas"] > g("readyReplicas") or st["availableReplicas"] > g("availableReplicas")


def status(d: dict[str, Any], new: dict[str, Any] | None, rss: list[dict[str, Any]], now: dt.datetime, *, created: str | None = None, collision_count: int | None = None) -> tuple[dict[str, Any], float | None]:
    """The Deployment's status (conditions included) and when to look again (the
    progress deadline)."""
    prev = d.get("status") or {}
    st = counts(d, new, rss)
    st["conditions"] = copy.deepcopy(prev.get("conditions") or [])
    if collision_count or prev.get("collisionCount"):
        st["collisionCount"] = collision_count if collision_count is not None else prev.get("collisionCount")
    ts = stamp(now)
    _, max_unavailable = surge_and_unavailable(d)
    if st["availableReplicas"] >= replicas(d) - max_unavailable:
        P.set_condition(st, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", ts, update_time=True)
    else:
        P.set_condition(st, "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", ts, update_time=True)
    spec = d.get("spec") or {}
    rs_name = P.md(new).get("name") if new else None
    cur = P.condition({"status": st}, "Progressing")
    if spec.get("paused"):
        P.set_condition(st, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", ts, update_time=True)
        return st, None
    if cur is not None and cur.get("reason") == "DeploymentPaused":
        P.set_condition(st, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", ts, update_time=True)
        cur = P.condition({"status": st}, "Progressing")
    if created and rs_name:
        P.set_condition(st, "Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"', ts, update_time=True)
        cur = P.condition({"status": st}, "Progressing")
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is None:
        st["conditions"] = [c for c in st["conditions"] if c.get("type") != "Progressing"]
        return st, None
    is_complete = st["replicas"] == st["updatedReplicas"] and cur is not None and cur.get("reason") == "NewReplicaSetAvailable"
    if is_complete:
        return st, None
    if complete(d, st) and rs_name:
        P.set_condition(st, "Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.', ts, update_time=True)
        return st, None
    if rs_name and (progressing(d, st) or cur is None or cur.get("status") == "Unknown"):
        if cur is not None and cur.get("status") == "True" and cur.get("reason") in ("ReplicaSetUpdated", "NewReplicaSetCreated", "FoundNewReplicaSet"):
            cur.update({"reason": "ReplicaSetUpdated", "message": f'ReplicaSet "{rs_name}" is progressing.', "lastUpdateTime": ts})
        else:
            P.set_condition(st, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.', ts, update_time=True)
        return st, float(deadline)
    cur = P.condition({"status": st}, "Progressing")
    if cur is not None and cur.get("status") == "True" and rs_name:
        since = parse_time(cur.get("lastUpdateTime") or cur.get("lastTransitionTime"))
        if since is not None:
            left = float(deadline) - (now - since).total_seconds()
            if left <= 0:
                P.set_condition(st, "Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.', ts, update_time=True)
                return st, None
            return st, left + 0.5
    return st, None


# -- scaling (a replica change, also in the middle of a rollout) ---------------------------


def _round(x: float) -> int:
    """Go's ``math.Round``: halves away from zero."""
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def _annotation_int(rs: dict[str, Any], key: str) -> int | None:
    try:
        return int((P.md(rs).get("annotations") or {})[key])
    except (KeyError, TypeError, ValueError):
        return None


def is_scaling_event(d: dict[str, Any], rss: list[dict[str, Any]]) -> bool:
    """Did the Deployment's replicas change since its active ReplicaSets were last sized?"""
    for rs in rss:
        if rs_state(rs).replicas > 0:
            want = _annotation_int(rs, DESIRED_REPLICAS)
            if want is not None and want != replicas(d):
                return True
    return False


def scale(d: dict[str, Any], new: dict[str, Any] | None, old: list[dict[str, Any]]) -> dict[str, int]:
    """The replicas of each ReplicaSet after a scaling event, as Kubernetes' ``scale``: one
    active ReplicaSet (or none: the newest) takes the whole count; a saturated new one leaves
    the old ones at 0; otherwise (a rolling update under way) the change up to
    ``replicas + maxSurge`` is spread over the active ReplicaSets in proportion to their size,
    the rest going to the largest."""
    n = replicas(d)
    olds = sorted(old, key=lambda r: str(P.md(r).get("creationTimestamp") or ""), reverse=True)
    active = [r for r in ([*olds, new] if new else olds) if rs_state(r).replicas > 0]
    if len(active) <= 1:
        target = active[0] if active else (new or (olds[0] if olds else None))
        if target is None or rs_state(target).replicas == n:
            return {}
        return {P.md(target).get("name", ""): n}
    if new is not None and rs_state(new).replicas == n and _annotation_int(new, DESIRED_REPLICAS) == n and rs_state(new).available == n:
        return {P.md(r).get("name", ""): 0 for r in active if r is not new}
    if strategy(d) != "RollingUpdate":
        return {}
    surge, _ = surge_and_unavailable(d)
    allowed = n + surge if n > 0 else 0
    total = sum(rs_state(r).replicas for r in active)
    to_add = allowed - total
    if to_add == 0:
        return {}

    def key(r: dict[str, Any]) -> tuple[int, str]:
        return (rs_state(r).replicas, str(P.md(r).get("creationTimestamp") or ""))

    ordered = sorted(active, key=key, reverse=True) if to_add > 0 else sorted(active, key=lambda r: (-rs_state(r).replicas, str(P.md(r).get("creationTimestamp") or "")))
    status_replicas = int((d.get("status") or {}).get("replicas") or 0)
    added = 0
    sizes: dict[str, int] = {}
    for r in ordered:
        cur = rs_state(r).replicas
        proportion = 0
        if cur and to_add != added:
            if n == 0:
                fraction = -cur
            else:
                annotated = _annotation_int(r, MAX_REPLICAS) or status_replicas or 1
                fraction = _round(cur * (n + surge) / annotated) - cur
            left = to_add - added
            proportion = min(fraction, left) if to_add > 0 else max(fraction, left)
        sizes[P.md(r).get("name", "")] = cur + proportion
        added += proportion
    first = P.md(ordered[0]).get("name", "")
    sizes[first] = max(sizes[first] + to_add - added, 0)
    return {k: v for k, v in sizes.items() if v != rs_state(next(r for r in active if P.md(r).get("name") == k)).replicas}
