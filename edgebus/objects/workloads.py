"""Workloads (``apps/v1``, ``batch/v1``): defaults (:mod:`edgebus.objects.workload_defaults`)
and validation as the Kubernetes API server applies them. Pure, no I/O.

Defaults (applied on every write, as Kubernetes defaults on decode): Deployment
``replicas: 1``, ``strategy: RollingUpdate 25%/25%``, ``revisionHistoryLimit: 10``,
``progressDeadlineSeconds: 600``; ReplicaSet ``replicas: 1``; DaemonSet ``updateStrategy:
RollingUpdate maxUnavailable 1 maxSurge 0``, ``revisionHistoryLimit: 10``; StatefulSet
``replicas: 1``, ``podManagementPolicy: OrderedReady``, ``updateStrategy: RollingUpdate
partition 0``, ``revisionHistoryLimit: 10``; Job ``parallelism``/``completions`` 1,
``backoffLimit: 6``, ``completionMode: NonIndexed``, ``suspend: false`` and the generated
selector (``batch.kubernetes.io/controller-uid``) with its template labels; CronJob
``concurrencyPolicy: Allow``, ``suspend: false``, history limits 3 and 1. Pod templates get
the pod defaults that do not depend on the node: ``restartPolicy: Always`` (not for Jobs),
``terminationGracePeriodSeconds: 30``, ``dnsPolicy: ClusterFirst``, ``schedulerName:
default-scheduler``.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any, TypeGuard

from edgebus.objects import labelselector
from edgebus.objects.workload_defaults import apply_defaults, drop_nulls  # noqa: F401 - re-exported
from edgebus.objects.checks import Causes, checks
from edgebus.objects.pod_checks import check_pod
from edgebus.objects.shapes import as_dict

DEPLOYMENT_STRATEGIES = ("Recreate", "RollingUpdate")
SET_STRATEGIES = ("OnDelete", "RollingUpdate")
POD_MANAGEMENT = ("OrderedReady", "Parallel")
CONCURRENCY = ("Allow", "Forbid", "Replace")
COMPLETION_MODES = ("NonIndexed", "Indexed")
_PERCENT = re.compile(r"^(\d+)%$")


# -- validation ------------------------------------------------------------------------


class _Prefixed(Causes):
    """Causes of a nested object, reported with their full path."""

    def __init__(self, parent: Causes, prefix: str) -> None:
        self.items = parent.items
        self.prefix = prefix

    def add(self, field: str, reason: str, message: str) -> None:
        self.items.append({"field": self.prefix + field, "reason": reason, "message": message})


def _int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _non_negative(c: Causes, field: str, v: Any) -> None:
    if v is None:
        return
    if not _int(v):
        c.type_error(field, "an integer", v)
    elif v < 0:
        c.invalid(field, v, "must be greater than or equal to 0")


def int_or_percent(v: Any, total: int, *, round_up: bool) -> int:
    """An IntOrString (``3`` or ``"25%"``) scaled against ``total``."""
    if _int(v):
        return int(v)
    if isinstance(v, str):
        m = _PERCENT.fullmatch(v)
        if m:
            n = int(m.group(1)) * total
            return (n + 99) // 100 if round_up else n // 100
        if v.isdigit():
            return int(v)
    return 0


def _check_int_or_percent(c: Causes, field: str, v: Any, *, max_100: bool) -> None:
    if v is None:
        return
    if _int(v):
        if v < 0:
            c.invalid(field, v, "must be greater than or equal to 0")
        return
    if not isinstance(v, str) or not _PERCENT.fullmatch(v):
        c.invalid(field, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")
    elif max_100 and int(v[:-1]) > 100:
        c.invalid(field, v, "must not be greater than 100%")


def _is_zero(v: Any) -> bool:
    return v in (0, "0%", "0")


def _check_selector(c: Causes, field: str, sel: Any, *, kind: str) -> bool:
    if sel is None:
        c.required(field)
        return False
    if not isinstance(sel, dict):
        c.type_error(field, "an object", sel)
        return False
    ml = sel.get("matchLabels")
    if ml is not None and (not isinstance(ml, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ml.items())):
        c.type_error(f"{field}.matchLabels", "a map of strings", ml)
        return False
    for i, e in enumerate(sel.get("matchExpressions") or []):
        f = f"{field}.matchExpressions[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("key"), str):
            c.required(f"{f}.key")
            return False
        op = e.get("operator")
        if op not in labelselector.OPERATORS:
            c.unsupported(f"{f}.operator", op, labelselector.OPERATORS)
            return False
        vals = e.get("values") or []
        if op in ("In", "NotIn") and not vals:
            c.required(f"{f}.values")
            return False
        if op in ("Exists", "DoesNotExist") and vals:
            c.add(f"{f}.values", "FieldValueForbidden", "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
            return False
    if labelselector.is_empty(sel):
        c.invalid(field, sel, f"empty selector is invalid for {kind}")
        return False
    return True


def _check_template(c: Causes, field: str, template: Any, selector: Any, *, restart: tuple[str, ...], selector_ok: bool, job: bool = False) -> None:
    if not isinstance(template, dict):
        c.required(field)
        return
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector_ok and not labelselector.matches(selector, labels):
        c.invalid(f"{field}.metadata.labels", labels, "`selector` does not match template `labels`")
    if not isinstance(template.get("spec"), dict):
        c.required(f"{field}.spec")
        return
    check_pod(_Prefixed(c, f"{field}."), {"spec": template["spec"]})
    rp = template["spec"].get("restartPolicy")
    if job:
        if rp not in restart:
            c.add(f"{field}.spec.restartPolicy", "FieldValueRequired", 'Required value: valid values: "OnFailure", "Never"')
    elif rp is not None and rp not in restart:
        c.unsupported(f"{field}.spec.restartPolicy", rp, restart)


def _spec(c: Causes, obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        c.required("spec")
        return None
    return spec


@checks("deployments")
def check_deployment(c: Causes, obj: dict[str, Any]) -> None:
    spec = _spec(c, obj)
    if spec is None:
        return
    _non_negative(c, "spec.replicas", spec.get("replicas"))
    ok = _check_selector(c, "spec.selector", spec.get("selector"), kind="deployment")
    _check_template(c, "spec.template", spec.get("template"), spec.get("selector"), restart=("Always",), selector_ok=ok)
    st = spec.get("strategy") or {}
    t = st.get("type")
    if t is not None and t not in DEPLOYMENT_STRATEGIES:
        c.unsupported("spec.strategy.type", t, DEPLOYMENT_STRATEGIES)
    ru = st.get("rollingUpdate")
    if t == "Recreate" and ru is not None:
        c.add("spec.strategy.rollingUpdate", "FieldValueForbidden", "Forbidden: may not be specified when strategy `type` is 'Recreate'")
    elif isinstance(ru, dict):
        _check_int_or_percent(c, "spec.strategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"), max_100=True)
        _check_int_or_percent(c, "spec.strategy.rollingUpdate.maxSurge", ru.get("maxSurge"), max_100=False)
        if _is_zero(ru.get("maxUnavailable")) and _is_zero(ru.get("maxSurge")):
            c.invalid("spec.strategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"), "may not be 0 when `maxSurge` is 0")
    for f in ("revisionHistoryLimit", "minReadySeconds", "progressDeadlineSeconds"):
        _non_negative(c, f"spec.{f}", spec.get(f))
    pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if _int(pds) and _int(mrs) and pds <= mrs:
        c.invalid("spec.progressDeadlineSeconds", pds, "must be greater than minReadySeconds")
    if spec.get("paused") is not None and not isinstance(spec.get("paused"), bool):
        c.type_error("spec.paused", "a boolean", spec.get("paused"))


@checks("replicasets")
def check_replicaset(c: Causes, obj: dict[str, Any]) -> None:
    spec = _spec(c, obj)
    if spec is None:
        return
    _non_negative(c, "spec.replicas", spec.get("replicas"))
    _non_negative(c, "spec.minReadySeconds", spec.get("minReadySeconds"))
    ok = _check_selector(c, "spec.selector", spec.get("selector"), kind="replicaset")
    _check_template(c, "spec.template", spec.get("template"), spec.get("selector"), restart=("Always",), selector_ok=ok)


def _check_set_strategy(c: Causes, spec: dict[str, Any]) -> dict[str, Any]:
    st = spec.get("updateStrategy") or {}
    t = st.get("type")
    if t is not None and t not in SET_STRATEGIES:
        c.unsupported("spec.updateStrategy.type", t, SET_STRATEGIES)
    if t == "OnDelete" and st.get("rollingUpdate") is not None:
        c.add("spec.updateStrategy.rollingUpdate", "FieldValueForbidden", "Forbidden: only allowed for updateStrategy 'RollingUpdate'")
    return as_dict(st.get("rollingUpdate"))


@checks("daemonsets")
def check_daemonset(c: Causes, obj: dict[str, Any]) -> None:
    spec = _spec(c, obj)
    if spec is None:
        return
    ok = _check_selector(c, "spec.selector", spec.get("selector"), kind="daemonset")
    _check_template(c, "spec.template", spec.get("template"), spec.get("selector"), restart=("Always",), selector_ok=ok)
    ru = _check_set_strategy(c, spec)
    _check_int_or_percent(c, "spec.updateStrategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"), max_100=True)
    _check_int_or_percent(c, "spec.updateStrategy.rollingUpdate.maxSurge", ru.get("maxSurge"), max_100=True)
    if ru and _is_zero(ru.get("maxUnavailable", 1)) and _is_zero(ru.get("maxSurge", 0)):
        c.invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"), "may not be 0 when `maxSurge` is 0")
    for f in ("revisionHistoryLimit", "minReadySeconds"):
        _non_negative(c, f"spec.{f}", spec.get(f))


@checks("statefulsets")
def check_statefulset(c: Causes, obj: dict[str, Any]) -> None:
    spec = _spec(c, obj)
    if spec is None:
        return
    _non_negative(c, "spec.replicas", spec.get("replicas"))
    ok = _check_selector(c, "spec.selector", spec.get("selector"), kind="statefulset")
    _check_template(c, "spec.template", spec.get("template"), spec.get("selector"), restart=("Always",), selector_ok=ok)
    pmp = spec.get("podManagementPolicy")
    if pmp is not None and pmp not in POD_MANAGEMENT:
        c.unsupported("spec.podManagementPolicy", pmp, POD_MANAGEMENT)
    ru = _check_set_strategy(c, spec)
    _non_negative(c, "spec.updateStrategy.rollingUpdate.partition", ru.get("partition"))
    _check_int_or_percent(c, "spec.updateStrategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"), max_100=True)
    if ru.get("maxUnavailable") is not None and _is_zero(ru.get("maxUnavailable")):
        c.invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", ru.get("maxUnavailable"), "must be greater than 0")
    for f in ("revisionHistoryLimit", "minReadySeconds"):
        _non_negative(c, f"spec.{f}", spec.get(f))
    start = (spec.get("ordinals") or {}).get("start") if isinstance(spec.get("ordinals"), dict) else None
    _non_negative(c, "spec.ordinals.start", start)
    sn = spec.get("serviceName")
    if sn is not None and not isinstance(sn, str):
        c.type_error("spec.serviceName", "a string", sn)


def check_job_spec(c: Causes, spec: dict[str, Any], prefix: str = "spec") -> None:
    for f in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        _non_negative(c, f"{prefix}.{f}", spec.get(f))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not _int(ads) or ads <= 0):
        c.invalid(f"{prefix}.activeDeadlineSeconds", ads, "must be greater than 0")
    mode = spec.get("completionMode")
    if mode is not None and mode not in COMPLETION_MODES:
        c.unsupported(f"{prefix}.completionMode", mode, COMPLETION_MODES)
    elif mode == "Indexed" and spec.get("completions") is None:
        c.required(f"{prefix}.completions")
    sel = spec.get("selector")
    ok = False
    if spec.get("manualSelector") is True:
        ok = _check_selector(c, f"{prefix}.selector", sel, kind="job")
    elif sel is not None:
        ok = isinstance(sel, dict) and not labelselector.is_empty(sel)
    _check_template(c, f"{prefix}.template", spec.get("template"), sel, restart=("OnFailure", "Never"), selector_ok=ok, job=True)


@checks("jobs")
def check_job(c: Causes, obj: dict[str, Any]) -> None:
    spec = _spec(c, obj)
    if spec is not None:
        check_job_spec(c, spec)


@checks("cronjobs")
def check_cronjob(c: Causes, obj: dict[str, Any]) -> None:
    spec = _spec(c, obj)
    if spec is None:
        return
    sched = spec.get("schedule")
    if not isinstance(sched, str) or not sched.strip():
        c.required("spec.schedule")
    else:
        err = schedule_error(sched)
        if err:
            c.invalid("spec.schedule", sched, err)
    tz = spec.get("timeZone")
    if tz is not None:
        try:
            zoneinfo.ZoneInfo(str(tz))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            c.invalid("spec.timeZone", tz, "unknown time zone " + str(tz))
    cp = spec.get("concurrencyPolicy")
    if cp is not None and cp not in CONCURRENCY:
        c.unsupported("spec.concurrencyPolicy", cp, CONCURRENCY)
    for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        _non_negative(c, f"spec.{f}", spec.get(f))
    jt = spec.get("jobTemplate")
    if not isinstance(jt, dict) or not isinstance(jt.get("spec"), dict):
        c.required("spec.jobTemplate.spec")
        return
    check_job_spec(c, jt["spec"], "spec.jobTemplate.spec")


def schedule_error(schedule: str) -> str | None:
    """Why a cron schedule is not valid (None: it is). ``TZ=``/``CRON_TZ=`` prefixes are
    refused as Kubernetes does since 1.27 (``spec.timeZone`` replaces them)."""
    from croniter import croniter

    if schedule.strip().upper().startswith(("TZ=", "CRON_TZ=")):
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    fields = schedule.split()
    if not schedule.startswith("@") and len(fields) != 5:
        return f"expected exactly 5 fields, found {len(fields)}: {schedule}"
    if not croniter.is_valid(schedule):
        return f"unparseable schedule: {schedule}"
    return None


@checks("controllerrevisions")
def check_controllerrevision(c: Causes, obj: dict[str, Any]) -> None:
    rev = obj.get("revision")
    if rev is None:
        c.required("revision")
    else:
        _non_negative(c, "revision", rev)


# -- updates ---------------------------------------------------------------------------

_STS_MUTABLE = ("replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds")


def _immutable(c: Causes, field: str, new: Any, old: Any) -> None:
    if new != old:
        c.invalid(field, new, "field is immutable")


def validate_update(plural: str, new: dict[str, Any], old: dict[str, Any]) -> Causes:
    """What an update may not change (the selector, a StatefulSet's other spec fields, a
    ControllerRevision's data, a Job's template once started)."""
    c = Causes()
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    if plural in ("deployments", "replicasets", "daemonsets", "statefulsets", "jobs"):
        if os_.get("selector") is not None:
            _immutable(c, "spec.selector", ns.get("selector"), os_.get("selector"))
    if plural == "statefulsets":
        rest_new = {k: v for k, v in ns.items() if k not in _STS_MUTABLE}
        rest_old = {k: v for k, v in os_.items() if k not in _STS_MUTABLE}
        if rest_new != rest_old:
            c.add(
                "spec",
                "FieldValueForbidden",
                "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )
    if plural == "jobs":
        if ns.get("completions") != os_.get("completions"):
            c.invalid("spec.completions", ns.get("completions"), "field is immutable")
        started = bool((old.get("status") or {}).get("startTime"))
        if ns.get("template") != os_.get("template") and not (ns.get("suspend") and not started):
            c.invalid("spec.template", ns.get("template"), "field is immutable")
    if plural == "controllerrevisions":
        _immutable(c, "data", new.get("data"), old.get("data"))
    if plural == "runtimeclasses":
        _immutable(c, "handler", new.get("handler"), old.get("handler"))
    return c
