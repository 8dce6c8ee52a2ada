"""Workload resources in the API: defaults, validation messages, update rules, Table
columns, discovery, OpenAPI paths and the delete finalizers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edgebus import kube
from edgebus.errors import Invalid
from edgebus.objects import CRONJOBS, DAEMONSETS, DEPLOYMENTS, JOBS, STATEFULSETS, resolve, tables
from edgebus.objects.validation import validate
from edgebus.objects.workloads import apply_defaults, validate_update
from edgebus.objectstore import finalizing_delete
from edgebus.openapi import spec as openapi_spec

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox:1"}]}}


def deployment(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": copy.deepcopy(TEMPLATE), **spec}}


def messages(resource: Any, obj: dict[str, Any]) -> list[str]:
    with pytest.raises(Invalid) as ei:
        validate(resource, obj)
    return [f"{c['field']}: {c['message']}" for c in ei.value.details["causes"]]


def test_deployment_defaults() -> None:
    d = deployment()
    apply_defaults("deployments", d)
    s = d["spec"]
    assert s["replicas"] == 1 and s["revisionHistoryLimit"] == 10 and s["progressDeadlineSeconds"] == 600
    assert s["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    t = s["template"]["spec"]
    assert t["restartPolicy"] == "Always" and t["terminationGracePeriodSeconds"] == 30 and t["dnsPolicy"] == "ClusterFirst" and t["schedulerName"] == "default-scheduler"
    r = deployment(strategy={"type": "Recreate"})
    apply_defaults("deployments", r)
    assert r["spec"]["strategy"] == {"type": "Recreate"}


def test_job_defaults_generate_the_selector() -> None:
    j = {"metadata": {"name": "pi", "uid": "1234"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}
    apply_defaults("jobs", j)
    s = j["spec"]
    assert s["completions"] == 1 and s["parallelism"] == 1 and s["backoffLimit"] == 6 and s["completionMode"] == "NonIndexed" and s["suspend"] is False
    assert s["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}
    assert s["template"]["metadata"]["labels"] == {"batch.kubernetes.io/controller-uid": "1234", "controller-uid": "1234", "batch.kubernetes.io/job-name": "pi", "job-name": "pi"}
    validate(JOBS, j)


def test_other_defaults() -> None:
    ds = {"spec": {"template": copy.deepcopy(TEMPLATE)}}
    apply_defaults("daemonsets", ds)
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    sts = {"spec": {"template": copy.deepcopy(TEMPLATE)}}
    apply_defaults("statefulsets", sts)
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady" and sts["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    cj = {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}}
    apply_defaults("cronjobs", cj)
    assert cj["spec"]["concurrencyPolicy"] == "Allow" and cj["spec"]["successfulJobsHistoryLimit"] == 3 and cj["spec"]["failedJobsHistoryLimit"] == 1


def test_validation_messages_are_kubernetes() -> None:
    bad = deployment(selector={"matchLabels": {"app": "other"}})
    assert messages(DEPLOYMENTS, bad) == ['spec.template.metadata.labels: Invalid value: dict: `selector` does not match template `labels`']
    assert messages(DEPLOYMENTS, deployment(selector=None)) == ["spec.selector: Required value"]
    assert messages(DEPLOYMENTS, deployment(selector={})) == ["spec.selector: Invalid value: dict: empty selector is invalid for deployment"]
    assert messages(DEPLOYMENTS, deployment(replicas=-1)) == ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    zero = deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}})
    assert messages(DEPLOYMENTS, zero) == ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
    rec = deployment(strategy={"type": "Recreate", "rollingUpdate": {}})
    assert messages(DEPLOYMENTS, rec) == ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
    never = deployment()
    never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert messages(DEPLOYMENTS, never) == ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']
    noimage = deployment()
    del noimage["spec"]["template"]["spec"]["containers"][0]["image"]
    assert messages(DEPLOYMENTS, noimage) == ["spec.template.spec.containers[0].image: Required value"]
    job = {"metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    assert messages(JOBS, job) == ['spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"']
    cj = {"metadata": {"name": "c"}, "spec": {"schedule": "every minute", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}
    assert messages(CRONJOBS, cj)[0].startswith('spec.schedule: Invalid value: "every minute"')
    cj["spec"]["schedule"] = "TZ=UTC * * * * *"
    assert messages(CRONJOBS, cj) == ['spec.schedule: Invalid value: "TZ=UTC * * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead']
    cj["spec"].update(schedule="* * * * *", timeZone="Mars/Olympus")
    assert messages(CRONJOBS, cj) == ['spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus']


def test_updates_keep_selectors_and_statefulset_fields() -> None:
    old = deployment()
    new = deployment(selector={"matchLabels": {"app": "web", "x": "y"}})
    assert [c["field"] for c in validate_update("deployments", new, old).items] == ["spec.selector"]
    assert validate_update("deployments", deployment(replicas=5), old).items == []
    s_old = {"spec": {"replicas": 1, "serviceName": "a", "selector": {"matchLabels": {"a": "b"}}}}
    s_new = {"spec": {"replicas": 3, "serviceName": "b", "selector": {"matchLabels": {"a": "b"}}}}
    c = validate_update("statefulsets", s_new, s_old).items
    assert len(c) == 1 and "updates to statefulset spec for fields other than 'replicas'" in c[0]["message"]
    assert validate_update("statefulsets", {"spec": {**s_old["spec"], "replicas": 4}}, s_old).items == []
    assert [x["field"] for x in validate_update("controllerrevisions", {"data": {"a": 2}}, {"data": {"a": 1}}).items] == ["data"]


def test_delete_finalizers() -> None:
    o = {"metadata": {"name": "x"}}
    assert finalizing_delete(o, None) is None and finalizing_delete(o, "Background") is None
    fg = finalizing_delete(o, "Foreground")
    assert fg is not None and fg["metadata"]["finalizers"] == ["foregroundDeletion"] and fg["metadata"]["deletionTimestamp"]
    assert finalizing_delete(fg, "Foreground") is fg  # nothing more to do
    assert finalizing_delete(o, "Orphan")["metadata"]["finalizers"] == ["orphan"]
    kept = finalizing_delete({"metadata": {"name": "x", "finalizers": ["example.com/keep"]}}, None)
    assert kept is not None and kept["metadata"]["finalizers"] == ["example.com/keep"]


def test_tables_as_kubectl_prints_them() -> None:
    d = deployment(replicas=3)
    d["status"] = {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    headers, rows = tables.rows("deployments", [d], wide=True)
    assert headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[0][:4] == ["web", "2/3", "3", "2"] and rows[0][5:] == ["web", "busybox:1", "app=web"]
    assert [c.name for c in tables.columns("daemonsets")] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
    assert [c.name for c in tables.columns("replicasets", wide=True)] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert [c.name for c in tables.columns("statefulsets", wide=True)] == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]
    assert [c.name for c in tables.columns("jobs")] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert [c.name for c in tables.columns("cronjobs")] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]
    j = {"metadata": {"name": "pi"}, "spec": {"completions": 3}, "status": {"succeeded": 1, "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:01:05Z", "conditions": [{"type": "Complete", "status": "True"}]}}
    _, rows = tables.rows("jobs", [j])
    assert rows[0][:4] == ["pi", "Complete", "1/3", "65s"]
    par = {"metadata": {"name": "p"}, "spec": {"parallelism": 3}, "status": {}}
    assert tables.rows("jobs", [par])[1][0][1:3] == ["Running", "0/1 of 3"]
    expr = deployment(selector={"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}, {"key": "x", "operator": "DoesNotExist"}]})
    assert tables.rows("deployments", [expr], wide=True)[1][0][-1] == "app=web,tier in (a,b),!x"


def test_discovery_names_categories_and_subresources() -> None:
    assert resolve("deploy") is DEPLOYMENTS and resolve("ds") is DAEMONSETS and resolve("sts") is STATEFULSETS and resolve("cj") is CRONJOBS
    groups = {g["name"] for g in kube.api_group_list()["groups"]}
    assert {"apps", "batch"} <= groups
    apps = {r["name"]: r for r in kube.api_resource_list("apps", "v1")["resources"]}
    assert apps["deployments"]["categories"] == ["all"] and apps["deployments"]["shortNames"] == ["deploy"]
    assert apps["deployments/scale"]["kind"] == "Scale" and apps["deployments/scale"]["group"] == "autoscaling"
    assert {"deployments/status", "replicasets/scale", "statefulsets/scale", "daemonsets/status", "controllerrevisions"} <= set(apps)
    assert "daemonsets/scale" not in apps and "categories" not in apps["controllerrevisions"]
    core = {r["name"]: r for r in kube.api_resource_list()["resources"]}
    assert core["pods"]["categories"] == ["all"] and core["services"]["categories"] == ["all"] and "categories" not in core["configmaps"]
    batch = {r["name"] for r in kube.api_resource_list("batch", "v1")["resources"]}
    assert {"jobs", "jobs/status", "cronjobs", "cronjobs/status"} <= batch


def test_openapi_paths() -> None:
    paths = openapi_spec.v2_document()["paths"]
    scale = paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert scale["patch"]["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert "application/strategic-merge-patch+json" in paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]["consumes"]
    assert "application/strategic-merge-patch+json" not in paths["/apis/devices.kubeedge.io/v1beta1/namespaces/{namespace}/devices/{name}"]["patch"]["consumes"]
    assert "/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}/status" in paths
    assert any(p["name"] == "propagationPolicy" for p in paths["/apis/batch/v1/namespaces/{namespace}/jobs/{name}"]["delete"]["parameters"])


def test_owner_references_and_finalizers_are_checked() -> None:
    from edgebus.objects import CONFIGMAPS

    ok = {"metadata": {"name": "x", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u", "controller": True}], "finalizers": ["a/b"]}}
    validate(CONFIGMAPS, ok)
    assert messages(CONFIGMAPS, {"metadata": {"name": "x", "ownerReferences": 5}}) == ["metadata.ownerReferences: Invalid value: 5: must be a list"]
    two = {"metadata": {"name": "x", "ownerReferences": [{**ok["metadata"]["ownerReferences"][0]}, {**ok["metadata"]["ownerReferences"][0], "uid": "v"}]}}
    assert messages(CONFIGMAPS, two) == ["metadata.ownerReferences: Invalid value: list: Only one reference can have Controller set to true"]
    assert messages(CONFIGMAPS, {"metadata": {"name": "x", "ownerReferences": [{"kind": "X"}]}}) == [
        "metadata.ownerReferences[0].apiVersion: Required value",
        "metadata.ownerReferences[0].name: Required value",
        "metadata.ownerReferences[0].uid: Required value",
    ]
    assert messages(CONFIGMAPS, {"metadata": {"name": "x", "finalizers": [1]}}) == ["metadata.finalizers: Invalid value: list: must be a list of strings"]
