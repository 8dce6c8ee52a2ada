"""Pure logic of the statefulset, daemonset, job, cronjob controllers and the garbage
collector, and the shared pod/revision helpers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from edgebus.workloads import pods as P
from edgebus.workloads import revisions as R
from services.cronjobcontroller import logic as cron
from services.daemonsetcontroller import logic as ds
from services.garbagecollector import logic as gc
from services.jobcontroller import logic as job
from services.statefulsetcontroller import logic as sts

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def pod(name: str, phase: str = "Running", ready: bool = True, *, labels: dict[str, str] | None = None, node: str | None = None, restarts: int = 0, **md: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels or {}, "creationTimestamp": "2026-03-01T11:00:00Z", **md},
        "spec": {"containers": [{"name": "c"}], **({"nodeName": node} if node else {})},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-03-01T11:00:00Z"}], "containerStatuses": [{"restartCount": restarts}]},
    }
    return p


# -- shared helpers ---------------------------------------------------------------------


def test_deletion_rank_prefers_unscheduled_pending_notready() -> None:
    pods = [pod("ready", node="n"), pod("notready", ready=False, node="n"), pod("pending", "Pending", False, node="n"), pod("unscheduled", "Pending", False)]
    assert [p["metadata"]["name"] for p in sorted(pods, key=P.deletion_rank)] == ["unscheduled", "pending", "notready", "ready"]


def test_a_pod_its_unreachable_node_still_runs_is_deleted_last() -> None:
    from services.cloudhub import logic as hub

    assert hub.READY_BEFORE == P.READY_BEFORE_UNREACHABLE  # the annotation cloudhub's node lifecycle sets
    offline = hub.pod_not_ready(pod("offline", node="n"), "n", dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))
    assert offline is not None and P.is_held_offline(offline)
    pods = [pod("ready", node="n"), offline, pod("notready", ready=False, node="n")]
    assert [p["metadata"]["name"] for p in sorted(pods, key=P.deletion_rank)] == ["notready", "ready", "offline"]
    back = hub.pod_ready_restored(offline)
    assert back is not None and not P.is_held_offline(back)
    offline["metadata"]["deletionTimestamp"] = "2026-03-01T12:00:00Z"
    assert not P.is_held_offline(offline)


def test_availability_needs_min_ready_seconds() -> None:
    p = pod("a")
    assert P.is_available(p, 0, NOW)
    assert P.is_available(p, 3600, NOW) and not P.is_available(p, 3601, NOW)
    assert P.available_in(p, 3610, NOW) == pytest.approx(10)


def test_template_hash_is_stable_and_changes_with_the_template() -> None:
    t = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    h = R.template_hash(t)
    assert h == R.template_hash({"spec": t["spec"], "metadata": t["metadata"]})  # key order does not matter
    assert h != R.template_hash(t, 1) and h != R.template_hash({**t, "spec": {"containers": [{"name": "c", "image": "y"}]}})
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10


def test_controller_revision_round_trip() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default", "uid": "u"}}
    t = {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    cr = R.new_controller_revision(owner, t, 3, "abc")
    assert cr["metadata"]["name"] == "agent-abc" and cr["revision"] == 3 and cr["metadata"]["labels"]["app"] == "agent"
    assert cr["data"]["spec"]["template"]["$patch"] == "replace"
    assert R.template_of(cr) == t
    assert R.matching_revision([cr], t) is cr and R.next_revision([cr]) == 4
    old = [{**cr, "metadata": {"name": f"agent-{i}"}, "revision": i} for i in range(1, 6)]
    assert [r["metadata"]["name"] for r in R.history_to_delete(old, 2, {"agent-1"})] == ["agent-2", "agent-3"]


# -- statefulset ----------------------------------------------------------------------------


def statefulset(replicas: int, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "db", "generation": 1}, "spec": {"replicas": replicas, "serviceName": "db", **spec}}


def test_ordinals_and_identity() -> None:
    assert sts.ordinal_of("db", "db-12") == 12
    assert sts.ordinal_of("db", "db-012") is None and sts.ordinal_of("db", "dbx-1") is None and sts.ordinal_of("db", "db-1-2") is None
    assert list(sts.ordinals(statefulset(3, ordinals={"start": 5}))) == [5, 6, 7]
    name, labels, spec = sts.identity(statefulset(1), 2, "db-abc")
    assert name == "db-2" and labels["apps.kubernetes.io/pod-index"] == "2" and spec == {"hostname": "db-2", "subdomain": "db"}


def rev(p: dict[str, Any], r: str) -> dict[str, Any]:
    p["metadata"]["labels"]["controller-revision-hash"] = r
    return p


def test_ordered_ready_creates_one_at_a_time() -> None:
    s = statefulset(3)
    assert sts.plan(s, {}, "r1", "r1", NOW).create == [(0, "r1")]
    assert sts.plan(s, {0: rev(pod("db-0", ready=False), "r1")}, "r1", "r1", NOW).create == []  # db-0 not ready yet
    assert sts.plan(s, {0: rev(pod("db-0"), "r1")}, "r1", "r1", NOW).create == [(1, "r1")]
    par = statefulset(3, podManagementPolicy="Parallel")
    assert sts.plan(par, {}, "r1", "r1", NOW).create == [(0, "r1"), (1, "r1"), (2, "r1")]


def test_failed_pods_are_replaced_and_scale_down_goes_from_the_top() -> None:
    s = statefulset(2)
    step = sts.plan(s, {0: rev(pod("db-0", "Failed"), "r1")}, "r1", "r1", NOW)
    assert [p["metadata"]["name"] for p in step.delete] == ["db-0"] and step.create == []
    pods = {i: rev(pod(f"db-{i}"), "r1") for i in range(4)}
    assert [p["metadata"]["name"] for p in sts.plan(s, pods, "r1", "r1", NOW).delete] == ["db-3"]
    par = statefulset(2, podManagementPolicy="Parallel")
    assert sorted(p["metadata"]["name"] for p in sts.plan(par, pods, "r1", "r1", NOW).delete) == ["db-2", "db-3"]
    # an unhealthy pod blocks ordered scale-down
    pods[0] = rev(pod("db-0", ready=False), "r1")
    assert sts.plan(s, pods, "r1", "r1", NOW).delete == []


def test_rolling_update_from_the_top_down_to_the_partition() -> None:
    s = statefulset(3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}})
    pods = {i: rev(pod(f"db-{i}"), "old") for i in range(3)}
    assert [p["metadata"]["name"] for p in sts.plan(s, pods, "old", "new", NOW).delete] == ["db-2"]
    pods[2] = rev(pod("db-2"), "new")
    assert [p["metadata"]["name"] for p in sts.plan(s, pods, "old", "new", NOW).delete] == ["db-1"]
    pods[1] = rev(pod("db-1"), "new")
    assert sts.plan(s, pods, "old", "new", NOW).delete == []  # db-0 is below the partition
    del pods[0]
    assert sts.plan(s, pods, "old", "new", NOW).create == [(0, "old")]  # re-created at the current revision
    st = sts.status(s, {**pods, 0: rev(pod("db-0"), "old")}, "old", "new", NOW)
    assert st["updatedReplicas"] == 2 and st["currentReplicas"] == 1 and st["currentRevision"] == "old"
    ondelete = statefulset(2, updateStrategy={"type": "OnDelete"})
    assert sts.plan(ondelete, {i: rev(pod(f"db-{i}"), "old") for i in range(2)}, "old", "new", NOW).delete == []


# -- daemonset ------------------------------------------------------------------------------


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def test_should_run_selector_affinity_taints() -> None:
    assert ds.should_run({"nodeSelector": {"site": "a"}}, node("n", {"site": "a"}))
    assert not ds.should_run({"nodeSelector": {"site": "a"}}, node("n", {"site": "b"}))
    aff = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1", "z2"]}]}, {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]}]}}}}
    assert ds.should_run(aff, node("n", {"zone": "z2"})) and ds.should_run(aff, node("special")) and not ds.should_run(aff, node("n", {"zone": "z3"}))
    gt = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}
    assert ds.should_run(gt, node("n", {"cores": "8"})) and not ds.should_run(gt, node("n", {"cores": "2"}))
    tainted = node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    assert not ds.should_run({}, tainted)
    assert ds.should_run({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}, tainted)
    assert ds.should_run({"tolerations": [{"operator": "Exists"}]}, tainted)
    assert ds.should_run({}, node("n", taints=[{"key": "x", "effect": "PreferNoSchedule"}]))
    # daemons tolerate unreachable / not-ready / unschedulable nodes: autonomy keeps them
    for key, effect in (("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unschedulable", "NoSchedule")):
        assert ds.should_run({}, node("n", taints=[{"key": key, "effect": effect}]))


def test_pod_spec_for_node() -> None:
    spec = ds.pod_spec_for_node({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}}}, "edge-2", bind=False)
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["edge-2"]}]}]}
    assert "nodeName" not in spec
    assert ds.pod_spec_for_node({"containers": []}, "edge-2", bind=True)["nodeName"] == "edge-2"
    assert P.node_of({"spec": spec}) == "edge-2"


def test_node_actions() -> None:
    should = {"a": True, "b": True, "c": False, "d": True}
    by_node = {
        "a": [pod("a1", labels={"controller-revision-hash": "h"})],
        "b": [pod("b1", labels={"controller-revision-hash": "h"}), pod("b2", labels={"controller-revision-hash": "h"}, creationTimestamp="2026-03-01T11:30:00Z")],
        "c": [pod("c1")],
        "d": [pod("d1", "Failed")],
    }
    plan = ds.node_actions(should, by_node, "h", surging=False)
    assert plan.create == []
    assert sorted(p["metadata"]["name"] for p in plan.delete) == ["b2", "c1"]
    assert [p["metadata"]["name"] for p in plan.failed] == ["d1"]
    assert ds.node_actions({"e": True}, {}, "h", surging=False).create == ["e"]


def test_daemonset_rolling_update_budget() -> None:
    d = {"metadata": {"generation": 2}, "spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}}}}
    should = {f"n{i}": True for i in range(5)}
    by_node = {f"n{i}": [pod(f"p{i}", labels={"controller-revision-hash": "old"}, node=f"n{i}")] for i in range(5)}
    by_node["n4"] = [pod("p4", ready=False, labels={"controller-revision-hash": "old"}, node="n4")]  # unavailable: replaced at once
    out = ds.rolling_update(d, by_node, should, "new", NOW)
    assert sorted(p["metadata"]["name"] for p in out.delete) == ["p0", "p1", "p4"]
    surge = {"metadata": {}, "spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}}}
    by_node = {f"n{i}": [pod(f"p{i}", labels={"controller-revision-hash": "old"}, node=f"n{i}")] for i in range(3)}
    assert ds.rolling_update(surge, by_node, {n: True for n in by_node}, "new", NOW).surge == ["n0"]


# -- job ------------------------------------------------------------------------------------


def a_job(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "pi"}, "spec": {"parallelism": 1, "completions": 1, "backoffLimit": 6, "template": {"spec": {"restartPolicy": "Never"}}, **spec}, "status": {}}


def test_job_wants_min_of_parallelism_and_remaining() -> None:
    j = a_job(completions=5, parallelism=3)
    assert job.plan(j, [], NOW).create == [None] * 3
    done = [pod(f"s{i}", "Succeeded") for i in range(4)]
    assert job.plan(j, done, NOW).create == [None]
    step = job.plan(j, done + [pod("s5", "Succeeded")], NOW)
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in step.status["conditions"])
    assert step.status["succeeded"] == 5 and step.status["completionTime"] == "2026-03-01T12:00:00Z"
    # no completions: parallelism until one succeeds, complete when the rest are done
    j2 = a_job(completions=None, parallelism=2)
    assert job.plan(j2, [], NOW).create == [None, None]
    assert job.plan(j2, [pod("a", "Succeeded"), pod("b")], NOW).create == []
    assert any(c["type"] == "Complete" for c in job.plan(j2, [pod("a", "Succeeded")], NOW).status["conditions"])


def test_job_backoff() -> None:
    j = a_job(backoffLimit=2)
    failed = [pod("f1", "Failed", False)]
    step = job.plan(j, failed, NOW, backoff_base=10)  # failed 5 min ago: past the back-off
    assert step.create == [None]
    recent = pod("f2", "Failed", False)
    recent["status"]["conditions"][0]["lastTransitionTime"] = "2026-03-01T11:59:55Z"
    step = job.plan(j, [recent], NOW, backoff_base=10)
    assert step.create == [] and 4.9 < step.again < 5.2
    step = job.plan(j, [pod(f"f{i}", "Failed", False) for i in range(3)], NOW)
    cond = next(c for c in step.status["conditions"] if c["type"] == "Failed")
    assert cond["reason"] == "BackoffLimitExceeded" and step.status["failed"] == 3
    onfail = a_job(backoffLimit=3, template={"spec": {"restartPolicy": "OnFailure"}})
    assert not any(c["type"] == "Failed" for c in job.plan(onfail, [pod("r", restarts=2)], NOW).status["conditions"])
    assert any(c["type"] == "Failed" for c in job.plan(onfail, [pod("r", restarts=3)], NOW).status["conditions"])


def test_job_deadline_suspend_ttl_indexed() -> None:
    j = a_job(activeDeadlineSeconds=60)
    j["status"] = {"startTime": "2026-03-01T11:58:00Z"}
    step = job.plan(j, [pod("a")], NOW)
    assert [p["metadata"]["name"] for p in step.delete] == ["a"]
    assert next(c for c in step.status["conditions"] if c["type"] == "Failed")["reason"] == "DeadlineExceeded"
    s = job.plan(a_job(suspend=True), [pod("a")], NOW)
    assert [p["metadata"]["name"] for p in s.delete] == ["a"] and s.status["conditions"][0]["reason"] == "JobSuspended"
    fin = a_job(ttlSecondsAfterFinished=100)
    fin["status"] = {"completionTime": "2026-03-01T11:59:00Z", "conditions": [{"type": "Complete", "status": "True"}]}
    assert job.ttl_left(fin, NOW) == 40
    idx = a_job(completions=4, parallelism=2, completionMode="Indexed")
    done = pod("d", "Succeeded", annotations={job.INDEX_ANNOTATION: "0"})
    busy = pod("b", annotations={job.INDEX_ANNOTATION: "1"})
    step = job.plan(idx, [done, busy], NOW)
    assert step.create == [2] and step.status["completedIndexes"] == "0"
    assert job.compress({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"


# -- cronjob ------------------------------------------------------------------------------------


def cronjob(schedule: str, *, created: str = "2026-03-01T10:00:00Z", last: str | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": "default", "uid": "u", "creationTimestamp": created}, "spec": {"schedule": schedule, **spec}, "status": {"lastScheduleTime": last} if last else {}}


def test_cron_schedule() -> None:
    s = cron.schedule(cronjob("*/15 * * * *", last="2026-03-01T11:45:00Z"), NOW)
    assert s.due == dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC) and s.next == dt.datetime(2026, 3, 1, 12, 15, tzinfo=dt.UTC)
    s = cron.schedule(cronjob("*/15 * * * *", last="2026-03-01T12:00:00Z"), NOW + dt.timedelta(minutes=5))
    assert s.due is None
    # missed runs while away: only the latest runs
    s = cron.schedule(cronjob("*/15 * * * *", last="2026-03-01T10:00:00Z"), NOW + dt.timedelta(minutes=7))
    assert s.due == dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC) and s.missed == 8
    # too old for the starting deadline
    s = cron.schedule(cronjob("0 * * * *", last="2026-03-01T11:00:00Z", startingDeadlineSeconds=60), NOW + dt.timedelta(minutes=5))
    assert s.due is None
    s = cron.schedule(cronjob("0 9 * * *", timeZone="Europe/Berlin", created="2026-02-28T00:00:00Z"), dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC))
    assert s.due == dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)  # 09:00 in Berlin (UTC+1)
    assert cron.schedule(cronjob("@hourly"), NOW).next == dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.UTC)


def test_cron_job_names_and_history() -> None:
    t = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    assert cron.job_name(cronjob("* * * * *"), t) == f"tick-{int(t.timestamp()) // 60}"
    j = cron.job_for(cronjob("* * * * *", jobTemplate={"metadata": {"labels": {"a": "b"}}, "spec": {"backoffLimit": 1}}), t)
    assert j["metadata"]["labels"] == {"a": "b"} and j["spec"] == {"backoffLimit": 1} and j["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert j["metadata"]["annotations"][cron.SCHEDULED_ANNOTATION] == "2026-03-01T12:00:00+00:00"

    def fin(name: str, kind: str, start: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": {"startTime": start, "conditions": [{"type": kind, "status": "True"}]}}

    jobs = [fin("ok1", "Complete", "1"), fin("ok2", "Complete", "2"), fin("bad1", "Failed", "1"), fin("bad2", "Failed", "2"), {"metadata": {"name": "run"}, "status": {}}]
    gone = cron.history_to_delete(cronjob("* * * * *", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=1), jobs)
    assert sorted(j["metadata"]["name"] for j in gone) == ["bad1", "ok1"]
    st = cron.status(cronjob("* * * * *"), jobs)
    assert [a["name"] for a in st["active"]] == ["run"]


# -- garbage collector ----------------------------------------------------------------------


def obj(name: str, uid: str, owners: list[dict[str, Any]] | None = None, **md: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": uid, **({"ownerReferences": owners} if owners else {}), **md}}


def ref(uid: str, kind: str = "ReplicaSet", block: bool = True) -> dict[str, Any]:
    return {"apiVersion": "apps/v1" if kind != "ConfigMap" else "v1", "kind": kind, "name": "x", "uid": uid, "blockOwnerDeletion": block}


def test_gc_decisions() -> None:
    g = gc.Graph()
    owner = obj("rs", "o1")
    dep = obj("p", "d1", [ref("o1")])
    g.observe(("replicasets", "default", "rs"), owner, None)
    g.observe(("pods", "default", "p"), dep, None)
    assert gc.decide(dep, g, lambda r: None).delete is False
    g.observe(("replicasets", "default", "rs"), None, owner)  # the owner goes
    assert gc.decide(dep, g, lambda r: None).delete is True
    two = obj("p2", "d2", [ref("o1"), ref("o2")])
    g.observe(("replicasets", "default", "rs2"), obj("rs2", "o2"), None)
    a = gc.decide(two, g, lambda r: None)
    assert not a.delete and a.drop_owners == ["o1"]
    assert not gc.decide(obj("w", "d3", [{"apiVersion": "x.io/v1", "kind": "Widget", "name": "w", "uid": "zz"}]), g, lambda r: None).delete


def test_gc_foreground_and_orphan() -> None:
    g = gc.Graph()
    owner = obj("d", "o1", finalizers=["foregroundDeletion"], deletionTimestamp="t")
    dep = obj("rs", "d1", [ref("o1", "Deployment")])
    g.observe(("deployments", "default", "d"), owner, None)
    g.observe(("replicasets", "default", "rs"), dep, None)
    a = gc.decide(owner, g, lambda r: dep)
    assert a.delete_dependents == [(("replicasets", "default", "rs"), "Background")] and a.remove_finalizer is None
    g.observe(("replicasets", "default", "rs"), None, dep)
    assert gc.decide(owner, g, lambda r: None).remove_finalizer == "foregroundDeletion"
    orphaning = obj("d", "o1", finalizers=["orphan"], deletionTimestamp="t")
    g.observe(("replicasets", "default", "rs"), dep, None)
    a = gc.decide(orphaning, g, lambda r: dep)
    assert a.orphan == [("replicasets", "default", "rs")] and a.remove_finalizer == "orphan"


# -- node groups ----------------------------------------------------------------------------


def test_image_parsing_and_overrides() -> None:
    from services.edgeapplicationcontroller import logic as eapp

    assert eapp.parse_image("nginx") == eapp.Image("", "nginx", "")
    assert eapp.parse_image("library/nginx:1.27") == eapp.Image("", "library/nginx", ":1.27")
    assert eapp.parse_image("registry.example.com:5000/edge/app@sha256:abc") == eapp.Image("registry.example.com:5000", "edge/app", "@sha256:abc")
    assert eapp.parse_image("localhost/app:v1").registry == "localhost"
    img = "registry.example.com/edge/app:v1"
    assert eapp.override_image(img, {"component": "Registry", "operator": "replace", "value": "mirror.local"}) == "mirror.local/edge/app:v1"
    assert eapp.override_image(img, {"component": "Registry", "operator": "add", "value": "-cn"}) == "registry.example.com-cn/edge/app:v1"
    assert eapp.override_image(img, {"component": "Registry", "operator": "remove"}) == "edge/app:v1"
    assert eapp.override_image(img, {"component": "Repository", "operator": "add", "value": "-arm"}) == "registry.example.com/edge/app-arm:v1"
    assert eapp.override_image(img, {"component": "Tag", "operator": "remove"}) == "registry.example.com/edge/app"
    assert eapp.override_image("app", {"component": "Tag", "operator": "replace", "value": "v3"}) == "app:v3"


def test_env_command_args_overrides_and_predicate() -> None:
    from services.edgeapplicationcontroller import logic as eapp

    d = {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "command": ["run", "--v"]}, {"name": "b", "image": "y:1"}]}}}}
    out = eapp.apply_overriders(
        d,
        {
            "envOverriders": [{"containerName": "a", "operator": "remove", "value": [{"name": "A"}]}, {"containerName": "a", "operator": "add", "value": [{"name": "C", "value": "3"}]}],
            "commandOverriders": [{"containerName": "a", "operator": "remove", "value": ["--v"]}],
            "argsOverriders": [{"containerName": "b", "operator": "add", "value": ["-q"]}],
            "imageOverriders": [{"component": "Tag", "operator": "replace", "value": "2", "predicate": {"path": "/spec/template/spec/containers/1/image"}}],
        },
    )
    a, b = out["spec"]["template"]["spec"]["containers"]
    assert a["env"] == [{"name": "B", "value": "2"}, {"name": "C", "value": "3"}] and a["command"] == ["run"] and a["image"] == "x:1"
    assert b["args"] == ["-q"] and b["image"] == "y:2"
    assert d["spec"]["template"]["spec"]["containers"][0]["command"] == ["run", "--v"]  # the manifest is not changed


def test_node_group_plan() -> None:
    from services.nodegroupcontroller import logic as ng

    nodes = {
        "e1": {"metadata": {"labels": {"site": "a"}}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        "e2": {"metadata": {"labels": {"site": "a", "apps.kubeedge.io/belonging-to": "other"}}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
        "e3": {"metadata": {"labels": {"apps.kubeedge.io/belonging-to": "g"}}},
    }
    p = ng.plan("g", {"metadata": {"name": "g"}, "spec": {"matchLabels": {"site": "a"}, "nodes": ["x"]}}, nodes)
    assert p.label == ["e1"] and p.unlabel == ["e3"]
    assert [(s["nodeName"], s["readyStatus"], s["selectionStatus"]) for s in p.status["nodeStatuses"]] == [("e1", "Ready", "Succeeded"), ("e2", "NotReady", "Failed"), ("x", "Unknown", "Failed")]
    assert ng.plan("g", None, nodes).unlabel == ["e3"]


# -- the controller runtime's cache -----------------------------------------------------------


def test_cache_skips_states_older_than_its_own_writes_and_indexes_owners() -> None:
    from edgebus.workloads.controller import Cache

    c = Cache()
    owner = {"metadata": {"uid": "o1"}}
    pod = {"metadata": {"namespace": "default", "name": "p", "ownerReferences": [{"uid": "o1", "controller": True}]}}
    c.observe("pods", pod, 10, deleted=False)  # our own write, revision 10
    stale = {"metadata": {"namespace": "default", "name": "p"}}
    c.observe("pods", stale, 7, deleted=False)  # the watch delivers an older state afterwards
    assert c.get("pods", ("default", "p")) is pod and c.owned("pods", owner) == [pod]
    c.observe("pods", pod, 11, deleted=True)
    assert c.get("pods", ("default", "p")) is None and c.owned("pods", owner) == []
    c.observe("pods", stale, 9, deleted=False)  # older than the delete: still gone
    assert c.get("pods", ("default", "p")) is None
