"""cronjobcontroller: creates each CronJob's Jobs on its schedule.

Level-triggered on CronJobs and Jobs, and woken at the next schedule time (the work queue's
delay), so an idle CronJob costs nothing between runs; after a restart the missed run (if
still within ``startingDeadlineSeconds``) is made once, never twice (Job names are derived
from the schedule time). Scheduling rules in :mod:`services.cronjobcontroller.logic`.
Events: ``SuccessfulCreate`` (``Created job x``), ``SawCompletedJob``, ``SuccessfulDelete``,
``JobAlreadyActive``, ``TooManyMissedTimes``, ``MissSchedule``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from edgebus.errors import AlreadyExists
from edgebus.events import NORMAL, WARNING
from edgebus.objects import CRONJOBS, JOBS, Resource
from edgebus.runtime import Service, setup_logging
from edgebus.workloads import pods as P
from edgebus.workloads.controller import Controller, Key
from edgebus.workloads.service import build_controller
from services.cronjobcontroller import logic
from services.cronjobcontroller.config import Settings

log = logging.getLogger("edgebus.cronjobcontroller")

NAME = "cronjobcontroller"


class CronJobController(Controller):
    primary = CRONJOBS
    watched = (JOBS,)
    component = "cronjob-controller"

    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        ns = P.md(obj).get("namespace", "")
        if resource is CRONJOBS:
            return {(ns, P.md(obj).get("name", ""))}
        out: set[Key] = set()
        for o in (obj, old):
            ref = P.controller_of(o) if o else None
            if ref and ref.get("kind") == "CronJob":
                out.add((ns, ref.get("name", "")))
        return out

    async def reconcile(self, key: Key) -> float | None:
        cj = self.cache.get(CRONJOBS.plural, key)
        if cj is None:
            return None
        jobs = self.cache.owned(JOBS.plural, cj)
        was_active = {r.get("uid") for r in (cj.get("status") or {}).get("active") or []}
        for j in jobs:
            done = logic.job_finished(j)
            if done and P.md(j).get("uid") in was_active:
                self.event(cj, NORMAL, "SawCompletedJob", f"Saw completed job: {P.md(j).get('name')}, status: {done}")
        for j in logic.history_to_delete(cj, jobs):
            if await self.delete(JOBS, j, propagation="Background") is not None:
                self.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {P.md(j).get('name')}")
        jobs = self.cache.owned(JOBS.plural, cj)
        spec = cj.get("spec") or {}
        now = dt.datetime.now(dt.UTC)
        if P.md(cj).get("deletionTimestamp") or spec.get("suspend"):
            await self.update_status(key, logic.status(cj, jobs))
            return None
        sched = logic.schedule(cj, now)
        again = max((sched.next - now).total_seconds(), 0.0) + 0.05
        if sched.due is None:
            await self.update_status(key, logic.status(cj, jobs))
            return again
        if sched.missed > logic.MAX_MISSED:
            self.event(cj, WARNING, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
        name = logic.job_name(cj, sched.due)
        if any(P.md(j).get("name") == name for j in jobs):
            await self.update_status(key, logic.status(cj, jobs, logic_stamp(sched.due)))
            return again
        active = [j for j in jobs if not logic.job_finished(j) and not P.md(j).get("deletionTimestamp")]
        policy = spec.get("concurrencyPolicy") or "Allow"
        if active and policy == "Forbid":
            self.event(cj, NORMAL, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
            await self.update_status(key, logic.status(cj, jobs))
            return min(again, 10.0)
        if active and policy == "Replace":
            for j in active:
                if await self.delete(JOBS, j, propagation="Background") is not None:
                    self.event(cj, NORMAL, "SuccessfulDelete", f"Deleted job {P.md(j).get('name')}")
        try:
            job = await self.create(JOBS, logic.job_for(cj, sched.due))
            self.event(cj, NORMAL, "SuccessfulCreate", f"Created job {P.md(job).get('name')}")
        except AlreadyExists:
            pass  # made before a restart: the watch brings it
        await self.update_status(key, logic.status(cj, self.cache.owned(JOBS.plural, cj), logic_stamp(sched.due)))
        return again


def logic_stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build(settings: Settings | None = None) -> Service[CronJobController]:
    settings = settings or Settings()
    group = settings.cronjobcontroller
    return build_controller(NAME, settings, group, lambda store: CronJobController(store, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))
