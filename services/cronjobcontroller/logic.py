"""CronJob scheduling (pure; no I/O), as Kubernetes' CronJob controller (v2):

* the schedule is standard cron (five fields, or ``@hourly`` / ``@daily`` / ...; parsed by
  ``croniter``), in ``spec.timeZone`` (UTC without one);
* the time to run is the most recent schedule time after the last one run
  (``status.lastScheduleTime``, else the CronJob's creation) and not after now; one missed
  while the controller was away runs late, unless it is older than
  ``startingDeadlineSeconds``; more than 100 missed is reported (``TooManyMissedTimes``) and
  only the latest runs;
* the Job for time *t* is named ``<cronjob>-<t in minutes since the epoch>``, so running
  twice for one time is impossible (the second create finds it);
* ``concurrencyPolicy``: ``Allow``, ``Forbid`` (skip while one is active), ``Replace``
  (delete the active ones first); finished Jobs past ``successfulJobsHistoryLimit`` /
  ``failedJobsHistoryLimit`` are deleted, oldest first.
"""

from __future__ import annotations

import copy
import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from edgebus.objects.resources import parse_time
from edgebus.workloads import pods as P

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100


def zone(cj: dict[str, Any]) -> dt.tzinfo:
    tz = (cj.get("spec") or {}).get("timeZone")
    if tz:
        try:
            return zoneinfo.ZoneInfo(str(tz))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return dt.UTC


@dataclass(frozen=True, slots=True)
class Schedule:
    due: dt.datetime | None  # the schedule time to run now (None: nothing due)
    next: dt.datetime  # the next schedule time after now
    missed: int  # schedule times passed since the last run (capped at MAX_MISSED + 1)


def schedule(cj: dict[str, Any], now: dt.datetime) -> Schedule:
    spec = cj.get("spec") or {}
    tz = zone(cj)
    local_now = now.astimezone(tz)
    earliest = parse_time((cj.get("status") or {}).get("lastScheduleTime")) or parse_time(P.md(cj).get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        earliest = max(earliest, now - dt.timedelta(seconds=int(deadline)))
    it = croniter(str(spec.get("schedule") or ""), earliest.astimezone(tz))
    missed = 0
    due = None
    while missed <= MAX_MISSED:
        t = it.get_next(dt.datetime)
        if t > local_now:
            break
        missed += 1
        due = t
    if missed > MAX_MISSED:
        due = croniter(str(spec.get("schedule") or ""), local_now).get_prev(dt.datetime)
    nxt = croniter(str(spec.get("schedule") or ""), local_now).get_next(dt.datetime)
    return Schedule(due.astimezone(dt.UTC) if due else None, nxt.astimezone(dt.UTC), missed)


def job_name(cj: dict[str, Any], t: dt.datetime) -> str:
    return f"{P.md(cj).get('name')}-{int(t.timestamp()) // 60}"


def job_for(cj: dict[str, Any], t: dt.datetime) -> dict[str, Any]:
    jt = (cj.get("spec") or {}).get("jobTemplate") or {}
    jmd = jt.get("metadata") or {}
    meta: dict[str, Any] = {
        "name": job_name(cj, t),
        "namespace": P.md(cj).get("namespace") or "default",
        "labels": dict(jmd.get("labels") or {}),
        "annotations": {**(jmd.get("annotations") or {}), SCHEDULED_ANNOTATION: t.astimezone(zone(cj)).isoformat()},
        "ownerReferences": [P.owner_ref(cj)],
    }
    if not meta["labels"]:
        meta.pop("labels")
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": copy.deepcopy(jt.get("spec") or {})}


def job_finished(job: dict[str, Any]) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def reference(job: dict[str, Any]) -> dict[str, Any]:
    m = P.md(job)
    return {"apiVersion": "batch/v1", "kind": "Job", "name": m.get("name"), "namespace": m.get("namespace"), "uid": m.get("uid"), "resourceVersion": m.get("resourceVersion")}


def history_to_delete(cj: dict[str, Any], jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = cj.get("spec") or {}
    out = []
    for kind, key, default in (("Complete", "successfulJobsHistoryLimit", 3), ("Failed", "failedJobsHistoryLimit", 1)):
        limit = spec.get(key)
        limit = default if limit is None else int(limit)
        done = sorted((j for j in jobs if job_finished(j) == kind and not P.md(j).get("deletionTimestamp")), key=lambda j: (str((j.get("status") or {}).get("startTime") or P.md(j).get("creationTimestamp") or ""), P.md(j).get("name", "")))
        if len(done) > limit:
            out += done[: len(done) - limit]
    return out


def status(cj: dict[str, Any], jobs: list[dict[str, Any]], last_schedule: str | None = None) -> dict[str, Any]:
    prev = cj.get("status") or {}
    st: dict[str, Any] = {}
    active = sorted((j for j in jobs if not job_finished(j) and not P.md(j).get("deletionTimestamp")), key=lambda j: P.md(j).get("name", ""))
    if active:
        st["active"] = [reference(j) for j in active]
    ls = last_schedule or prev.get("lastScheduleTime")
    if ls:
        st["lastScheduleTime"] = ls
    ok = [str((j.get("status") or {}).get("completionTime")) for j in jobs if job_finished(j) == "Complete" and (j.get("status") or {}).get("completionTime")]
    best = max([*ok, *([prev["lastSuccessfulTime"]] if prev.get("lastSuccessfulTime") else [])], default=None)
    if best:
        st["lastSuccessfulTime"] = best
    return st
