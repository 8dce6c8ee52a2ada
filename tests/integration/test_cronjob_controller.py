"""cronjobcontroller against a real nats-server: a Job at the next minute, named after its
schedule time, status, history. (Scheduling rules are unit-tested with fake clocks.)"""

from __future__ import annotations

import datetime as dt

from edgebus.objects import CRONJOBS, JOBS
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import controllers, stamp


async def test_runs_on_schedule(hub: Hub) -> None:
    async with controllers(hub, "cronjobcontroller") as store:
        cj = {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick"},
            "spec": {
                "schedule": "* * * * *",
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {"metadata": {"labels": {"run": "tick"}}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1"}]}}}},
            },
        }
        await store.create(CRONJOBS, cj, namespace="default")

        async def job() -> dict | None:
            items, _ = await store.list(JOBS, "default", label_selector="run=tick")
            return items[0] if items else None

        j = await eventually(job, timeout=75, interval=0.5, msg="a job at the next minute")
        minute = int(j["metadata"]["name"].rsplit("-", 1)[1])
        assert minute * 60 <= dt.datetime.now(dt.UTC).timestamp() < minute * 60 + 60
        assert j["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
        assert j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].startswith(dt.datetime.fromtimestamp(minute * 60, dt.UTC).strftime("%Y-%m-%dT%H:%M"))

        async def active() -> bool:
            st = (await store.get(CRONJOBS, "default", "tick")).get("status") or {}
            return [a["name"] for a in st.get("active") or []] == [j["metadata"]["name"]] and bool(st.get("lastScheduleTime"))

        await eventually(active, timeout=10, msg="active in status")

        def done(o: dict) -> dict:
            t = stamp()
            o["status"] = {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": t}], "completionTime": t, "succeeded": 1}
            return o

        await store.mutate(JOBS, "default", j["metadata"]["name"], done)

        async def finished() -> bool:
            st = (await store.get(CRONJOBS, "default", "tick")).get("status") or {}
            return not st.get("active") and bool(st.get("lastSuccessfulTime"))

        await eventually(finished, timeout=10, msg="completed job seen")
