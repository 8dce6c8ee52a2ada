"""A StatefulSet's next steps (pure; no I/O), following Kubernetes' stateful set control:

* stable identities: pod ``<set>-<ordinal>`` for ordinals ``ordinals.start ..
  start + replicas - 1``, with ``statefulset.kubernetes.io/pod-name``,
  ``apps.kubernetes.io/pod-index``, ``hostname`` and ``subdomain`` (``serviceName``);
* ``OrderedReady``: one pod at a time, each created only when every lower one is Running and
  Ready, scale-down from the highest ordinal, one at a time and only while all are healthy;
  ``Parallel``: all at once;
* failed (or succeeded) pods are deleted and created again with the same name;
* ``RollingUpdate``: from the highest ordinal down to ``partition``, one pod at a time, each
  only when all pods are Running and Ready; below the partition pods keep the current revision;
  ``OnDelete``: pods change revision only when deleted.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from edgebus.workloads import pods as P
from edgebus.workloads.revisions import CONTROLLER_REVISION_HASH

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    m = re.fullmatch(re.escape(set_name) + r"-(0|[1-9][0-9]*)", pod_name)
    return int(m.group(1)) if m else None


def ordinals(sts: dict[str, Any]) -> range:
    spec = sts.get("spec") or {}
    start = int((spec.get("ordinals") or {}).get("start") or 0) if isinstance(spec.get("ordinals"), dict) else 0
    return range(start, start + int(spec.get("replicas") or 0))


def identity(sts: dict[str, Any], ordinal: int, revision: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(pod name, extra labels, spec fields) of the pod with ``ordinal``."""
    name = f"{P.md(sts).get('name')}-{ordinal}"
    labels = {POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), CONTROLLER_REVISION_HASH: revision}
    spec: dict[str, Any] = {"hostname": name}
    sn = (sts.get("spec") or {}).get("serviceName")
    if sn:
        spec["subdomain"] = sn
    return name, labels, spec


def revision_of(pod: dict[str, Any]) -> str:
    return str((P.md(pod).get("labels") or {}).get(CONTROLLER_REVISION_HASH) or "")


def healthy(pod: dict[str, Any], min_ready: int, now: dt.datetime) -> bool:
    return P.phase(pod) == "Running" and P.is_available(pod, min_ready, now) and not P.is_terminating(pod)


@dataclass
class Step:
    create: list[tuple[int, str]] = field(default_factory=list)  # (ordinal, revision name)
    delete: list[dict[str, Any]] = field(default_factory=list)


def plan(sts: dict[str, Any], pods: dict[int, dict[str, Any]], current: str, update: str, now: dt.datetime) -> Step:
    """What to do now; ``pods``: the set's pods by ordinal; ``current``/``update``: revision
    names (``controller-revision-hash`` values)."""
    spec = sts.get("spec") or {}
    monotonic = (spec.get("podManagementPolicy") or "OrderedReady") != "Parallel"
    mrs = int(spec.get("minReadySeconds") or 0)
    strategy = spec.get("updateStrategy") or {}
    rolling = (strategy.get("type") or "RollingUpdate") == "RollingUpdate"
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0) if rolling else 0
    want = ordinals(sts)
    step = Step()

    def revision_for(i: int) -> str:
        return current if rolling and i - want.start < partition and current else update

    for i in want:
        pod = pods.get(i)
        if pod is not None and P.is_finished(pod) and not P.is_terminating(pod):
            step.delete.append(pod)
            if monotonic:
                return step
            continue
        if pod is None:
            step.create.append((i, revision_for(i)))
            if monotonic:
                return step
            continue
        if monotonic and not healthy(pod, mrs, now):
            return step
    condemned = sorted((i for i in pods if i not in want), reverse=True)
    for i in condemned:
        pod = pods[i]
        if P.is_terminating(pod):
            if monotonic:
                return step
            continue
        step.delete.append(pod)
        if monotonic:
            return step
    if step.create or step.delete or not rolling:
        return step
    if any(not healthy(pods[i], mrs, now) for i in want if i in pods) or len([i for i in want if i in pods]) < len(want):
        return step
    for i in sorted(want, reverse=True):
        if i < partition + want.start:
            break
        pod = pods.get(i)
        if pod is not None and revision_of(pod) != update:
            step.delete.append(pod)
            return step
    return step


def status(sts: dict[str, Any], pods: dict[int, dict[str, Any]], current: str, update: str, now: dt.datetime) -> dict[str, Any]:
    spec = sts.get("spec") or {}
    mrs = int(spec.get("minReadySeconds") or 0)
    live = [p for p in pods.values() if not P.is_finished(p)]
    st: dict[str, Any] = {
        "observedGeneration": int(P.md(sts).get("generation") or 1),
        "replicas": len(live),
        "readyReplicas": sum(1 for p in live if P.is_ready(p)),
        "availableReplicas": sum(1 for p in live if P.is_available(p, mrs, now)),
        "currentReplicas": sum(1 for p in live if revision_of(p) == current),
        "updatedReplicas": sum(1 for p in live if revision_of(p) == update),
        "currentRevision": current,
        "updateRevision": update,
    }
    prev = sts.get("status") or {}
    st["collisionCount"] = int(prev.get("collisionCount") or 0)
    n = int(spec.get("replicas") or 0)
    rolling = ((spec.get("updateStrategy") or {}).get("type") or "RollingUpdate") == "RollingUpdate"
    if rolling and st["updatedReplicas"] == st["replicas"] == n and st["readyReplicas"] == n:
        st["currentRevision"] = update
        st["currentReplicas"] = st["updatedReplicas"]
    return st
