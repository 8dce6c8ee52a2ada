"""Workload defaults (``apps/v1``, ``batch/v1``), as the Kubernetes API server applies them
on every write; listed in :mod:`edgebus.objects.workloads`. Pure, no I/O."""

from __future__ import annotations

from typing import Any

DEFAULT_SCHEDULER = "default-scheduler"
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"


def _d(obj: dict[str, Any], key: str) -> dict[str, Any]:
    v = obj.get(key)
    if not isinstance(v, dict):
        v = {}
        obj[key] = v
    return v


# -- defaults --------------------------------------------------------------------------


def default_pod_template(template: Any, *, restart_policy: str | None = "Always") -> None:
    if not isinstance(template, dict):
        return
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return
    if restart_policy:
        spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", DEFAULT_SCHEDULER)
    spec.setdefault("securityContext", {})
    for c in spec.get("containers") or []:
        if isinstance(c, dict):
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})


def drop_nulls(x: Any) -> Any:
    """Remove ``null`` members (in place), as decoding into Kubernetes' typed objects does
    (kubectl sends templates with ``metadata.creationTimestamp: null``)."""
    if isinstance(x, dict):
        for k in [k for k, v in x.items() if v is None]:
            del x[k]
        for v in x.values():
            drop_nulls(v)
    elif isinstance(x, list):
        for v in x:
            drop_nulls(v)
    return x


def apply_defaults(plural: str, obj: dict[str, Any]) -> None:
    """Fill in what Kubernetes defaults for ``plural`` (in place; no-op for other kinds)."""
    fn = _DEFAULTS.get(plural)
    if fn is not None and isinstance(obj, dict) and isinstance(obj.get("spec"), dict):
        drop_nulls(obj["spec"])
        fn(obj)


def _default_deployment(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    spec.setdefault("replicas", 1)
    st = _d(spec, "strategy")
    st.setdefault("type", "RollingUpdate")
    if st["type"] == "RollingUpdate":
        ru = _d(st, "rollingUpdate")
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    default_pod_template(spec.get("template"))


def _default_replicaset(obj: dict[str, Any]) -> None:
    obj["spec"].setdefault("replicas", 1)
    default_pod_template(obj["spec"].get("template"))


def _default_daemonset(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    st = _d(spec, "updateStrategy")
    st.setdefault("type", "RollingUpdate")
    if st["type"] == "RollingUpdate":
        ru = _d(st, "rollingUpdate")
        ru.setdefault("maxUnavailable", 1)
        ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    default_pod_template(spec.get("template"))


def _default_statefulset(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    st = _d(spec, "updateStrategy")
    st.setdefault("type", "RollingUpdate")
    if st["type"] == "RollingUpdate":
        _d(st, "rollingUpdate").setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    default_pod_template(spec.get("template"))


def default_job_spec(spec: dict[str, Any], *, uid: str | None = None, name: str | None = None) -> None:
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    default_pod_template(spec.get("template"), restart_policy=None)
    if uid and not spec.get("manualSelector") and not spec.get("selector"):
        spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}
        tmpl = _d(spec, "template")
        labels = _d(_d(tmpl, "metadata"), "labels")
        labels.setdefault(JOB_UID_LABEL, uid)
        labels.setdefault(LEGACY_JOB_UID_LABEL, uid)
        if name:
            labels.setdefault(JOB_NAME_LABEL, name)
            labels.setdefault(LEGACY_JOB_NAME_LABEL, name)


def _default_job(obj: dict[str, Any]) -> None:
    md = obj.get("metadata") or {}
    default_job_spec(obj["spec"], uid=md.get("uid"), name=md.get("name"))


def _default_cronjob(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = spec.get("jobTemplate")
    if isinstance(jt, dict) and isinstance(jt.get("spec"), dict):
        js = jt["spec"]
        if js.get("completions") is None and js.get("parallelism") is None:
            js["completions"] = 1
            js["parallelism"] = 1
        js.setdefault("parallelism", 1)
        js.setdefault("backoffLimit", 6)
        js.setdefault("completionMode", "NonIndexed")
        js.setdefault("suspend", False)
        default_pod_template(js.get("template"), restart_policy=None)


_DEFAULTS = {
    "deployments": _default_deployment,
    "replicasets": _default_replicaset,
    "daemonsets": _default_daemonset,
    "statefulsets": _default_statefulset,
    "jobs": _default_job,
    "cronjobs": _default_cronjob,
}
