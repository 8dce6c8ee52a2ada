"""A Job's accounting and next step (pure; no I/O), as Kubernetes' job controller:

* ``succeeded`` / ``failed``: the Job's pods that ended so (they are kept until the Job goes);
* active pods wanted: ``min(parallelism, completions - succeeded)`` (without ``completions``:
  ``parallelism`` until one succeeds); ``Indexed`` Jobs create the lowest indexes that have
  neither succeeded nor an active pod;
* the Job fails with ``BackoffLimitExceeded`` when ``failed > backoffLimit`` (with
  ``restartPolicy: OnFailure``, when the restarts of its active pods reach it), or with
  ``DeadlineExceeded`` once active longer than ``activeDeadlineSeconds``; a failed pod is
  replaced after an exponential back-off (``backoff_base · 2^(failed-1)``, at most 6 min);
* it completes when ``succeeded`` reaches ``completions`` (without: when one succeeded and
  none are active);
* ``suspend`` deletes its active pods; ``ttlSecondsAfterFinished`` deletes the finished Job.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from edgebus.objects.resources import parse_time
from edgebus.workloads import pods as P

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
MAX_BACKOFF = 360.0


def stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def finished(job: dict[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` once the Job has finished."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def finish_time(job: dict[str, Any]) -> dt.datetime | None:
    st = job.get("status") or {}
    if st.get("completionTime"):
        return parse_time(st["completionTime"])
    for c in st.get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime"))
    return None


def ttl_left(job: dict[str, Any], now: dt.datetime) -> float | None:
    """Seconds until a finished Job with ``ttlSecondsAfterFinished`` is to be deleted."""
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    end = finish_time(job)
    if ttl is None or end is None or not finished(job):
        return None
    return max(float(ttl) - (now - end).total_seconds(), 0.0)


def index_of(pod: dict[str, Any]) -> int | None:
    v = (P.md(pod).get("annotations") or {}).get(INDEX_ANNOTATION)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def ended_at(pod: dict[str, Any]) -> dt.datetime | None:
    times = []
    for s in (pod.get("status") or {}).get("containerStatuses") or []:
        t = ((s or {}).get("state") or {}).get("terminated", {}).get("finishedAt")
        if t:
            times.append(parse_time(t))
    found = [t for t in times if t]
    if found:
        return max(found)
    c = P.ready_condition(pod)
    return parse_time((c or {}).get("lastTransitionTime")) or parse_time(P.md(pod).get("creationTimestamp"))


def compress(indexes: set[int]) -> str:
    """``0-2,4``: Kubernetes' ``completedIndexes`` form."""
    out: list[str] = []
    run: list[int] = []
    for i in sorted(indexes):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


@dataclass
class Step:
    create: list[int | None] = field(default_factory=list)  # an index per pod (None: NonIndexed)
    delete: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    again: float | None = None


def plan(job: dict[str, Any], pods: list[dict[str, Any]], now: dt.datetime, *, backoff_base: float = 10.0) -> Step:
    spec = job.get("spec") or {}
    prev = job.get("status") or {}
    ts = stamp(now)
    st: dict[str, Any] = {k: v for k, v in prev.items() if k in ("startTime", "completionTime", "conditions", "completedIndexes")}
    st["conditions"] = [dict(c) for c in prev.get("conditions") or []]
    step = Step(status=st)
    active = [p for p in pods if P.is_active(p)]
    succeeded_pods = [p for p in pods if P.phase(p) == "Succeeded"]
    failed_pods = [p for p in pods if P.phase(p) == "Failed"]
    indexed = spec.get("completionMode") == "Indexed"
    done_indexes = {i for p in succeeded_pods if (i := index_of(p)) is not None}
    succeeded = len(done_indexes) if indexed else len(succeeded_pods)
    failed = len(failed_pods)
    st.update({"active": len(active), "ready": sum(1 for p in active if P.is_ready(p)), "succeeded": succeeded, "failed": failed, "uncountedTerminatedPods": {}})
    if indexed:
        st["completedIndexes"] = compress(done_indexes)
    if not st.get("succeeded"):
        st.pop("succeeded")
    if not st.get("failed"):
        st.pop("failed")
    if finished(job):
        step.delete = active
        return step
    if spec.get("suspend"):
        step.delete = active
        if P.set_condition(st, "Suspended", "True", "JobSuspended", "Job suspended", ts):
            _probe(st, "Suspended", ts)
            step.events.append(("Normal", "Suspended", "Job suspended"))
        st.pop("startTime", None)
        return step
    cond = P.condition({"status": st}, "Suspended")
    if cond is not None and cond.get("status") == "True":
        P.set_condition(st, "Suspended", "False", "JobResumed", "Job resumed", ts)
        _probe(st, "Suspended", ts)
        step.events.append(("Normal", "Resumed", "Job resumed"))
    start = parse_time(st.get("startTime"))
    if start is None:
        start = now
        st["startTime"] = ts
    # failure
    limit = int(v if (v := spec.get("backoffLimit")) is not None else 6)
    restart_policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    reason = message = None
    restarts = sum(P.restarts(p) for p in active if P.phase(p) in ("Running", "Pending"))
    on_failure_exceeded = restart_policy == "OnFailure" and (restarts > 0 if limit == 0 else restarts >= limit)
    if failed > limit or on_failure_exceeded:
        reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    deadline = spec.get("activeDeadlineSeconds")
    if reason is None and deadline is not None and (now - start).total_seconds() >= float(deadline):
        reason, message = "DeadlineExceeded", "Job was active longer than specified deadline"
    if reason is not None:
        step.delete = active
        P.set_condition(st, "Failed", "True", reason, message or "", ts)
        _probe(st, "Failed", ts)
        step.events.append(("Warning", reason, message or ""))
        return step
    # completion
    completions = spec.get("completions")
    parallelism = int(v if (v := spec.get("parallelism")) is not None else 1)
    if (completions is not None and succeeded >= int(completions)) or (completions is None and succeeded > 0 and not active):
        step.delete = active
        P.set_condition(st, "Complete", "True", "", "", ts)
        _probe(st, "Complete", ts)
        st["completionTime"] = ts
        step.events.append(("Normal", "Completed", "Job completed"))
        return step
    if completions is None:
        want = 0 if succeeded > 0 else parallelism
    else:
        want = max(min(int(completions) - succeeded, parallelism), 0)
    if len(active) > want:
        step.delete = sorted(active, key=P.deletion_rank)[: len(active) - want]
        return step
    missing = want - len(active)
    if missing and failed_pods and restart_policy != "OnFailure":
        last = max((t for p in failed_pods if (t := ended_at(p))), default=None)
        delay = min(backoff_base * 2 ** (failed - 1), MAX_BACKOFF)
        if last is not None and (now - last).total_seconds() < delay:
            step.again = delay - (now - last).total_seconds() + 0.05
            missing = 0
    if missing:
        if indexed:
            busy = {i for p in active if (i := index_of(p)) is not None}
            free = [i for i in range(int(completions or 0)) if i not in done_indexes and i not in busy]
            step.create = list(free[:missing])
        else:
            step.create = [None] * missing
    if deadline is not None:
        left = float(deadline) - (now - start).total_seconds()
        step.again = min(step.again, left + 0.05) if step.again is not None else left + 0.05
    return step


def _probe(st: dict[str, Any], type_: str, ts: str) -> None:
    for c in st.get("conditions") or []:
        if c.get("type") == type_:
            c["lastProbeTime"] = ts
