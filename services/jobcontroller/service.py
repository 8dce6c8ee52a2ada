"""jobcontroller: runs Jobs' pods to completion (and the TTL after they finish).

Level-triggered on Jobs and pods. Accounting, parallelism, back-off, deadline, suspension,
``Indexed`` completion and ``ttlSecondsAfterFinished`` as in
:mod:`services.jobcontroller.logic`; pods are ``<job>-<5 chars>`` (``<job>-<index>-<5
chars>`` with the index annotation for ``Indexed`` Jobs). A finished Job past its TTL is
deleted with ``propagationPolicy: Foreground``, so its pods go first. Events:
``SuccessfulCreate``, ``SuccessfulDelete``, ``Completed``, ``BackoffLimitExceeded``,
``DeadlineExceeded``, ``Suspended``, ``Resumed``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from edgebus.events import NORMAL, WARNING
from edgebus.objects import JOBS, PODS, Resource
from edgebus.runtime import Service, setup_logging
from edgebus.workloads import pods as P
from edgebus.workloads.controller import Controller, Key, api_message, create_many
from edgebus.workloads.service import build_controller
from services.jobcontroller import logic
from services.jobcontroller.config import Settings

log = logging.getLogger("edgebus.jobcontroller")

NAME = "jobcontroller"


class JobController(Controller):
    primary = JOBS
    watched = (PODS,)
    component = "job-controller"

    def __init__(self, store: Any, *, backoff_base: float = 10.0, **kw: Any) -> None:
        super().__init__(store, **kw)
        self.backoff_base = backoff_base

    def keys_for(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> set[Key]:
        ns = P.md(obj).get("namespace", "")
        if resource is JOBS:
            return {(ns, P.md(obj).get("name", ""))}
        out: set[Key] = set()
        for o in (obj, old):
            ref = P.controller_of(o) if o else None
            if ref and ref.get("kind") == "Job":
                out.add((ns, ref.get("name", "")))
        return out

    async def reconcile(self, key: Key) -> float | None:
        job = self.cache.get(JOBS.plural, key)
        if job is None or P.md(job).get("deletionTimestamp"):
            return None
        now = dt.datetime.now(dt.UTC)
        left = logic.ttl_left(job, now)
        if left is not None and left <= 0:
            await self.delete(JOBS, job, propagation="Foreground")
            return None
        step = logic.plan(job, self.cache.owned(PODS.plural, job), now, backoff_base=self.backoff_base)
        for p in step.delete:
            if await self.delete(PODS, p) is not None:
                self.event(job, NORMAL, "SuccessfulDelete", f"Deleted pod: {P.md(p).get('name')}")
        if step.create:
            await self._create(job, step.create)
            step = logic.plan(job, self.cache.owned(PODS.plural, job), now, backoff_base=self.backoff_base)
        for type_, reason, message in step.events:
            self.event(job, type_, reason, message)
        await self.update_status(key, step.status)
        job = self.cache.get(JOBS.plural, key) or job
        left = logic.ttl_left(job, now)
        waits = [w for w in (step.again, left) if w is not None]
        return min(waits) if waits else None

    async def _create(self, job: dict[str, Any], indexes: list[int | None]) -> None:
        template = (job.get("spec") or {}).get("template") or {}
        queue = list(indexes)
        name = P.md(job).get("name", "")

        async def one() -> None:
            index = queue.pop(0)
            if index is None:
                pod = P.pod_from_template(template, job)
            else:
                pod = P.pod_from_template(template, job, generate_name=f"{name}-{index}-", extra_labels={logic.INDEX_ANNOTATION: str(index)})
                pod["metadata"]["annotations"] = {**(pod["metadata"].get("annotations") or {}), logic.INDEX_ANNOTATION: str(index)}
                pod["spec"].setdefault("hostname", f"{name}-{index}")
            out = await self.create(PODS, pod)
            self.event(job, NORMAL, "SuccessfulCreate", f"Created pod: {P.md(out).get('name')}")

        _, errors = await create_many(one, len(indexes))
        if errors:
            self.event(job, WARNING, "FailedCreate", f"Error creating: {api_message(errors[0])}")


def build(settings: Settings | None = None) -> Service[JobController]:
    settings = settings or Settings()
    group = settings.jobcontroller
    return build_controller(NAME, settings, group, lambda store: JobController(store, backoff_base=group.backoff_base, workers=group.workers))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))
