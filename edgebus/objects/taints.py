"""Taints and tolerations, as Kubernetes matches them (pure).

A toleration tolerates a taint when their effects match (an empty toleration effect
matches every effect) and either the toleration's operator is ``Exists`` (an empty key
then tolerates every taint) or its value equals the taint's (``Equal``, the default).
"""

from __future__ import annotations

from typing import Any

NO_SCHEDULE = "NoSchedule"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
NO_EXECUTE = "NoExecute"

#: the node stopped posting heartbeats (Ready=Unknown): added by cloudhub's node lifecycle
UNREACHABLE = "node.kubernetes.io/unreachable"
#: the node reports itself not ready (Ready=False)
NOT_READY = "node.kubernetes.io/not-ready"
#: the node is cordoned (``spec.unschedulable``); the scheduler treats it as this taint
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
#: taints the node lifecycle adds and removes itself
LIFECYCLE_TAINTS = (UNREACHABLE, NOT_READY)


def taints_of(node: dict[str, Any]) -> list[dict[str, Any]]:
    taints = (node.get("spec") or {}).get("taints")
    return [t for t in taints if isinstance(t, dict) and isinstance(t.get("key"), str)] if isinstance(taints, list) else []


def tolerations_of(pod: dict[str, Any]) -> list[dict[str, Any]]:
    tols = (pod.get("spec") or {}).get("tolerations")
    return [t for t in tols if isinstance(t, dict)] if isinstance(tols, list) else []


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if op == "Exists":
        return True
    if op != "Equal":
        return False
    return (toleration.get("value") or "") == (taint.get("value") or "")


def tolerated(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def first_untolerated(taints: list[dict[str, Any]], tolerations: list[dict[str, Any]], effects: tuple[str, ...]) -> dict[str, Any] | None:
    """The first taint with one of ``effects`` that no toleration tolerates."""
    for taint in taints:
        if taint.get("effect") in effects and not tolerated(tolerations, taint):
            return taint
    return None


def toleration_seconds(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> int | None:
    """How long a pod may stay on a node with the NoExecute ``taint``, given the
    tolerations that tolerate it: the smallest ``tolerationSeconds`` among them (0 for a
    non-positive one), or None when none of them sets it (tolerated forever) or none
    tolerates the taint at all (the caller decides what that means)."""
    matching = [t for t in tolerations if tolerates(t, taint)]
    secs = [t["tolerationSeconds"] for t in matching if isinstance(t.get("tolerationSeconds"), int) and not isinstance(t.get("tolerationSeconds"), bool)]
    if not secs:
        return None
    return max(min(secs), 0)


def with_taint(taints: list[dict[str, Any]], key: str, effect: str, *, time_added: str = "") -> list[dict[str, Any]]:
    """``taints`` plus ``key:effect`` (unchanged when already there)."""
    if any(t.get("key") == key and t.get("effect") == effect for t in taints):
        return taints
    t: dict[str, Any] = {"key": key, "effect": effect}
    if time_added and effect == NO_EXECUTE:
        t["timeAdded"] = time_added
    return [*taints, t]


def without_taints(taints: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [t for t in taints if t.get("key") not in keys]
