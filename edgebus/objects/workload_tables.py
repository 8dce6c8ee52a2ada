"""``kubectl get`` columns of the workloads, as Kubernetes 1.30 prints them
(``pkg/printers/internalversion``): the same names, order, priorities (``-o wide``) and cell
formats."""

from __future__ import annotations

from typing import Any

from edgebus.objects import labelselector
from edgebus.objects.resources import parse_time
from edgebus.objects.tables import Column, _age, _name, age


def _spec(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("spec") or {}


def _status(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("status") or {}


def _template_spec(o: dict[str, Any]) -> dict[str, Any]:
    return ((_spec(o).get("template") or {}).get("spec")) or {}


def _containers(o: dict[str, Any]) -> str:
    return ",".join(str(c.get("name", "")) for c in _template_spec(o).get("containers") or [] if isinstance(c, dict))


def _images(o: dict[str, Any]) -> str:
    return ",".join(str(c.get("image", "")) for c in _template_spec(o).get("containers") or [] if isinstance(c, dict))


def _job_template_spec(o: dict[str, Any]) -> dict[str, Any]:
    return (((_spec(o).get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}


def _cj_containers(o: dict[str, Any]) -> str:
    return ",".join(str(c.get("name", "")) for c in _job_template_spec(o).get("containers") or [] if isinstance(c, dict))


def _cj_images(o: dict[str, Any]) -> str:
    return ",".join(str(c.get("image", "")) for c in _job_template_spec(o).get("containers") or [] if isinstance(c, dict))


def _selector(o: dict[str, Any]) -> str:
    return labelselector.format(_spec(o).get("selector"))


def _n(v: Any) -> str:
    return str(int(v or 0))


def has_condition(o: dict[str, Any], type_: str) -> bool:
    return any(isinstance(c, dict) and c.get("type") == type_ and c.get("status") == "True" for c in _status(o).get("conditions") or [])


def job_status(o: dict[str, Any]) -> str:
    if has_condition(o, "Complete"):
        return "Complete"
    if has_condition(o, "Failed"):
        return "Failed"
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    if has_condition(o, "Suspended"):
        return "Suspended"
    if has_condition(o, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def job_completions(o: dict[str, Any]) -> str:
    spec, succeeded = _spec(o), int(_status(o).get("succeeded") or 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def job_duration(o: dict[str, Any]) -> str:
    st = _status(o)
    start = parse_time(st.get("startTime"))
    if start is None:
        return ""
    end = parse_time(st.get("completionTime"))
    if end is None:
        return age(st.get("startTime"))
    return age(st.get("startTime"), now=end)


def _last_schedule(o: dict[str, Any]) -> str:
    t = _status(o).get("lastScheduleTime")
    return age(t) if t else "<none>"


def _bool(v: Any) -> str:
    return "<unset>" if v is None else ("True" if v else "False")


def _controller(o: dict[str, Any]) -> str:
    for ref in (o.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            group = str(ref.get("apiVersion", "")).split("/")[0] if "/" in str(ref.get("apiVersion", "")) else ""
            kind = str(ref.get("kind", "")).lower()
            return f"{kind}.{group}/{ref.get('name')}" if group else f"{kind}/{ref.get('name')}"
    return "<none>"


COLUMNS: dict[str, list[Column]] = {
    "deployments": [
        Column("NAME", _name),
        Column("READY", lambda o: f"{int(_status(o).get('readyReplicas') or 0)}/{int(_spec(o).get('replicas') or 0)}"),
        Column("UP-TO-DATE", lambda o: _n(_status(o).get("updatedReplicas")), type="integer"),
        Column("AVAILABLE", lambda o: _n(_status(o).get("availableReplicas")), type="integer"),
        Column("AGE", _age),
        Column("CONTAINERS", _containers, wide=True),
        Column("IMAGES", _images, wide=True),
        Column("SELECTOR", _selector, wide=True),
    ],
    "replicasets": [
        Column("NAME", _name),
        Column("DESIRED", lambda o: _n(_spec(o).get("replicas")), type="integer"),
        Column("CURRENT", lambda o: _n(_status(o).get("replicas")), type="integer"),
        Column("READY", lambda o: _n(_status(o).get("readyReplicas")), type="integer"),
        Column("AGE", _age),
        Column("CONTAINERS", _containers, wide=True),
        Column("IMAGES", _images, wide=True),
        Column("SELECTOR", _selector, wide=True),
    ],
    "daemonsets": [
        Column("NAME", _name),
        Column("DESIRED", lambda o: _n(_status(o).get("desiredNumberScheduled")), type="integer"),
        Column("CURRENT", lambda o: _n(_status(o).get("currentNumberScheduled")), type="integer"),
        Column("READY", lambda o: _n(_status(o).get("numberReady")), type="integer"),
        Column("UP-TO-DATE", lambda o: _n(_status(o).get("updatedNumberScheduled")), type="integer"),
        Column("AVAILABLE", lambda o: _n(_status(o).get("numberAvailable")), type="integer"),
        Column("NODE SELECTOR", lambda o: labelselector.format_labels(_template_spec(o).get("nodeSelector"))),
        Column("AGE", _age),
        Column("CONTAINERS", _containers, wide=True),
        Column("IMAGES", _images, wide=True),
        Column("SELECTOR", _selector, wide=True),
    ],
    "statefulsets": [
        Column("NAME", _name),
        Column("READY", lambda o: f"{int(_status(o).get('readyReplicas') or 0)}/{int(_spec(o).get('replicas') or 0)}"),
        Column("AGE", _age),
        Column("CONTAINERS", _containers, wide=True),
        Column("IMAGES", _images, wide=True),
    ],
    "controllerrevisions": [
        Column("NAME", _name),
        Column("CONTROLLER", _controller),
        Column("REVISION", lambda o: _n(o.get("revision")), type="integer"),
        Column("AGE", _age),
    ],
    "jobs": [
        Column("NAME", _name),
        Column("STATUS", job_status),
        Column("COMPLETIONS", job_completions),
        Column("DURATION", job_duration),
        Column("AGE", _age),
        Column("CONTAINERS", _containers, wide=True),
        Column("IMAGES", _images, wide=True),
        Column("SELECTOR", _selector, wide=True),
    ],
    "cronjobs": [
        Column("NAME", _name),
        Column("SCHEDULE", lambda o: str(_spec(o).get("schedule") or "")),
        Column("TIMEZONE", lambda o: str(_spec(o).get("timeZone") or "<none>")),
        Column("SUSPEND", lambda o: _bool(_spec(o).get("suspend")), type="boolean"),
        Column("ACTIVE", lambda o: str(len(_status(o).get("active") or [])), type="integer"),
        Column("LAST SCHEDULE", _last_schedule),
        Column("AGE", _age),
        Column("CONTAINERS", _cj_containers, wide=True),
        Column("IMAGES", _cj_images, wide=True),
        Column("SELECTOR", lambda o: labelselector.format(((_spec(o).get("jobTemplate") or {}).get("spec") or {}).get("selector")), wide=True),
    ],
}
