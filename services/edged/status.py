"""Pod status and restart decisions from what the runtime reports (pure: no I/O).

The runtime is the record: a container's ``attempt`` (its CRI metadata) is its restart
count, its exit code and finish time come from ``ContainerStatus``. Nothing here needs
edged's memory, so a restarted edged computes the same status and the same back-off.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

RUNNING = "running"
CREATED = "created"
EXITED = "exited"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CState:
    """One container as the runtime reports it."""

    id: str
    name: str
    attempt: int
    state: str
    sandbox_id: str = ""
    created_at: int = 0  # ns
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image: str = ""
    image_ref: str = ""
    hash: str = ""


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str
    message: str = ""



def container_id(cid: str) -> str:
    """``<runtime>://<id>`` as the kubelet reports it (Wasm runtime IDs start with ``wasm-``)."""
    return f"wasm://{cid}" if cid.startswith("wasm-") else f"containerd://{cid}"

def rfc3339(ns: int) -> str | None:
    if not ns:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def restart_wanted(policy: str, last: CState) -> bool:
    """Whether an exited container is started again under ``policy``."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return last.exit_code != 0
    return False


def backoff_delay(restarts: int, initial: float, cap: float) -> float:
    """Kubernetes' crash back-off: the first restart is immediate, then ``initial``,
    doubling up to ``cap`` (10 s, 20 s, ... 5 min by default)."""
    if restarts <= 0 or initial <= 0:
        return 0.0
    return float(min(initial * (2 ** (restarts - 1)), cap))


def restart_at(last: CState, *, initial: float, cap: float, reset: float) -> float:
    """When (epoch seconds) an exited container may be started again."""
    ran = (last.finished_at - last.started_at) / 1e9 if last.started_at and last.finished_at else 0.0
    restarts = 0 if ran >= reset else last.attempt
    return last.finished_at / 1e9 + backoff_delay(restarts, initial, cap)


def _terminated(c: CState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "exitCode": c.exit_code,
        "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
        "containerID": container_id(c.id),
    }
    if c.message:
        out["message"] = c.message
    for k, v in (("startedAt", c.started_at), ("finishedAt", c.finished_at)):
        t = rfc3339(v)
        if t:
            out[k] = t
    return out


def container_status(
    spec: dict[str, Any],
    latest: CState | None,
    previous: CState | None,
    waiting: Waiting | None,
    *,
    ready: bool,
    started: bool,
    will_restart: bool,
) -> dict[str, Any]:
    """One entry of ``status.containerStatuses``."""
    name = str(spec["name"])
    out: dict[str, Any] = {
        "name": name,
        "image": str(spec.get("image") or ""),
        "imageID": "",
        "ready": False,
        "restartCount": latest.attempt if latest else 0,
        "started": False,
        "state": {},
        "lastState": {},
    }
    if latest is not None:
        out["containerID"] = container_id(latest.id)
        out["imageID"] = latest.image_ref
    if latest is not None and latest.state == RUNNING:
        out["state"] = {"running": {"startedAt": rfc3339(latest.started_at or latest.created_at)}}
        out["ready"] = ready
        out["started"] = started
        if previous is not None and previous.state == EXITED:
            out["lastState"] = {"terminated": _terminated(previous)}
    elif latest is not None and latest.state == EXITED and will_restart:
        w = waiting or Waiting("CrashLoopBackOff", f"back-off restarting failed container {name}")
        out["state"] = {"waiting": {"reason": w.reason, **({"message": w.message} if w.message else {})}}
        out["lastState"] = {"terminated": _terminated(latest)}
    elif latest is not None and latest.state == EXITED:
        out["state"] = {"terminated": _terminated(latest)}
        if previous is not None and previous.state == EXITED:
            out["lastState"] = {"terminated": _terminated(previous)}
    else:
        w = waiting or Waiting("ContainerCreating")
        out["state"] = {"waiting": {"reason": w.reason, **({"message": w.message} if w.message else {})}}
        if latest is not None and latest.state == EXITED:
            out["lastState"] = {"terminated": _terminated(latest)}
    return out


def init_progress(latest: list[CState | None], policy: str) -> str:
    """Where a pod's init containers are, from the latest run of each in order: ``done``
    (all succeeded), ``failed`` (one failed and ``policy`` is ``Never``) or ``running``."""
    for c in latest:
        if c is not None and c.state == EXITED and c.exit_code == 0:
            continue
        if c is not None and c.state == EXITED and policy == "Never":
            return "failed"
        return "running"
    return "done"


def phase(statuses: list[dict[str, Any]], policy: str) -> str:
    """The pod phase from its container statuses (the kubelet's rules)."""
    waiting = running = stopped = succeeded = 0
    for s in statuses:
        st = s.get("state") or {}
        if "running" in st:
            running += 1
        elif "terminated" in st:
            stopped += 1
            if st["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in st:
            if (s.get("lastState") or {}).get("terminated"):
                stopped += 1
            else:
                waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if policy == "OnFailure":
            return "Succeeded" if stopped == succeeded else "Running"
        return "Succeeded" if stopped == succeeded else "Failed"
    return "Pending"


def _condition(typ: str, status: bool, prev: dict[str, dict[str, Any]], now: str, reason: str = "") -> dict[str, Any]:
    st = "True" if status else "False"
    old = prev.get(typ)
    c: dict[str, Any] = {"type": typ, "status": st, "lastProbeTime": None}
    c["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == st and old.get("lastTransitionTime") else now
    if reason:
        c["reason"] = reason
    return c


def pod_status(
    pod: dict[str, Any],
    container_statuses: list[dict[str, Any]],
    *,
    policy: str,
    host_ip: str,
    pod_ip: str,
    start_time: str | None,
    previous: dict[str, Any] | None,
    now: str,
    message: str = "",
    reason: str = "",
    init_statuses: list[dict[str, Any]] | None = None,
    init_state: str = "done",
    deadline_exceeded: bool = False,
) -> dict[str, Any]:
    """The whole ``status`` of a pod: phase, conditions, container statuses, IPs, times.

    ``init_state`` is where the init containers are: ``done`` (or there are none),
    ``running`` (the pod is Pending, not Initialized) or ``failed`` (one failed and will
    not be run again: the pod Failed).

    ``lastTransitionTime`` of a condition moves only when its status changes, so the same
    observations give the same status (and nothing is published)."""
    ph = phase(container_statuses, policy)
    if init_state == "running":
        ph = "Pending"
    elif init_state == "failed":
        ph = "Failed"
    if deadline_exceeded:
        ph = "Failed"
    prev = {str(c.get("type")): c for c in (previous or {}).get("conditions") or [] if isinstance(c, dict)}

    all_ready = bool(container_statuses) and all(s.get("ready") for s in container_statuses)
    done = ph in ("Succeeded", "Failed")
    not_ready_reason = "PodFailed" if deadline_exceeded else "PodCompleted" if done else ("" if all_ready else "ContainersNotReady")
    conds = [
        _condition("PodScheduled", True, prev, now),
        _condition("Initialized", init_state == "done", prev, now, "ContainersNotInitialized" if init_state != "done" else ("PodCompleted" if done else "")),
        _condition("ContainersReady", all_ready and not done, prev, now, not_ready_reason),
        _condition("Ready", all_ready and not done, prev, now, not_ready_reason),
    ]
    out: dict[str, Any] = {
        "phase": ph,
        "conditions": conds,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}] if pod_ip else [],
        "containerStatuses": container_statuses,
        "qosClass": qos_class(pod),
    }
    if init_statuses:
        out["initContainerStatuses"] = init_statuses
    if start_time:
        out["startTime"] = start_time
    if message:
        out["message"] = message
    if reason:
        out["reason"] = reason
    return out


def qos_class(pod: dict[str, Any]) -> str:
    cs = [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
    guaranteed = bool(cs)
    any_set = False
    for c in cs:
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        if lim or req:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if guaranteed and any_set:
        return "Guaranteed"
    return "Burstable" if any_set else "BestEffort"
