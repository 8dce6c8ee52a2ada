"""PodDisruptionBudgets (``policy/v1``): which pods a budget covers, its status, and
whether an eviction may go ahead — Kubernetes' rules (pure).

* A budget covers the pods of its namespace its ``selector`` selects (an empty selector
  selects every pod of the namespace, a missing one none).
* ``expectedPods``: the covered pods that have not finished (edgebus counts pods; it does
  not read the scale of their controllers). ``desiredHealthy`` from ``minAvailable``
  (a count, or a percentage of ``expectedPods`` rounded up) or ``maxUnavailable``
  (``expectedPods`` minus it, a percentage rounded up). ``currentHealthy``: covered pods
  that are Ready, not terminating, and not evicted a moment ago (``disruptedPods``,
  forgotten once the pod is gone or after :data:`DISRUPTED_TIMEOUT`).
  ``disruptionsAllowed = max(currentHealthy - desiredHealthy, 0)``.
* An eviction of a healthy pod needs ``disruptionsAllowed > 0`` and a status observed
  for the budget's current generation; it then takes one disruption (and names the pod
  under ``disruptedPods``) before the pod is deleted.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from edgebus.objects.resources import meta, parse_time
from edgebus.objects.selectors import selector_matches
from edgebus.objects.checks import Causes, checks

#: seconds after which an eviction the budget has not seen the effect of is forgotten
DISRUPTED_TIMEOUT = 120.0
#: Kubernetes refuses evictions while this many are unconfirmed
MAX_DISRUPTED_PODS = 2000

EVICTION_REFUSED = "Cannot evict pod as it would violate the pod's disruption budget."


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def covers(pdb: dict[str, Any], pod: dict[str, Any]) -> bool:
    if meta(pdb).get("namespace") != meta(pod).get("namespace"):
        return False
    return selector_matches((pdb.get("spec") or {}).get("selector"), meta(pod).get("labels"))


def pod_ready(pod: dict[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def finished(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def healthy(pod: dict[str, Any]) -> bool:
    return pod_ready(pod) and not meta(pod).get("deletionTimestamp") and not finished(pod)


def int_or_percent(v: Any, total: int, *, round_up: bool = True) -> int | None:
    """An IntOrString (``2`` or ``"50%"``) scaled against ``total``; None when malformed."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        s = v.strip()
        if s.endswith("%"):
            try:
                pct = int(s[:-1])
            except ValueError:
                return None
            x = pct * total / 100
            return math.ceil(x) if round_up else math.floor(x)
        if s.isdigit():
            return int(s)
    return None


@dataclass(frozen=True, slots=True)
class Budget:
    expected: int
    desired: int
    current: int

    @property
    def allowed(self) -> int:
        return max(self.current - self.desired, 0)


def budget(pdb: dict[str, Any], pods: list[dict[str, Any]], disrupted: dict[str, str] | None = None) -> Budget:
    """The numbers of ``pdb`` given the pods of its namespace."""
    spec = pdb.get("spec") or {}
    covered = [p for p in pods if covers(pdb, p) and not finished(p)]
    expected = len(covered)
    gone = set(disrupted or {})
    current = sum(1 for p in covered if healthy(p) and meta(p).get("name") not in gone)
    if spec.get("maxUnavailable") is not None:
        mu = int_or_percent(spec["maxUnavailable"], expected) or 0
        desired = max(expected - mu, 0)
    elif spec.get("minAvailable") is not None:
        desired = max(int_or_percent(spec["minAvailable"], expected) or 0, 0)
    else:
        desired = 0
    return Budget(expected, desired, current)


def live_disruptions(pdb: dict[str, Any], pods: list[dict[str, Any]], now: dt.datetime) -> dict[str, str]:
    """``status.disruptedPods`` without the pods that are gone or terminating (the eviction
    took effect) and without those older than :data:`DISRUPTED_TIMEOUT`."""
    by_name = {meta(p).get("name"): p for p in pods if meta(p).get("namespace") == meta(pdb).get("namespace")}
    out: dict[str, str] = {}
    for name, ts in ((pdb.get("status") or {}).get("disruptedPods") or {}).items():
        p = by_name.get(name)
        t = parse_time(ts if isinstance(ts, str) else None)
        if p is None or meta(p).get("deletionTimestamp") or t is None or (now - t).total_seconds() > DISRUPTED_TIMEOUT:
            continue
        out[name] = ts
    return out


def status(pdb: dict[str, Any], pods: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    """The whole ``status`` of ``pdb`` (what the disruption controller writes)."""
    disrupted = live_disruptions(pdb, pods, now)
    b = budget(pdb, pods, disrupted)
    old = pdb.get("status") or {}
    allowed = b.allowed > 0
    cond_status = "True" if allowed else "False"
    prev = next((c for c in old.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "DisruptionAllowed"), None)
    transition = prev.get("lastTransitionTime") if prev and prev.get("status") == cond_status and prev.get("lastTransitionTime") else _rfc3339(now)
    st: dict[str, Any] = {
        "observedGeneration": int(meta(pdb).get("generation") or 1),
        "disruptionsAllowed": b.allowed,
        "currentHealthy": b.current,
        "desiredHealthy": b.desired,
        "expectedPods": b.expected,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": cond_status,
                "reason": "SufficientPods" if allowed else "InsufficientPods",
                "message": "",
                "observedGeneration": int(meta(pdb).get("generation") or 1),
                "lastTransitionTime": transition,
            }
        ],
    }
    if disrupted:
        st["disruptedPods"] = disrupted
    return st


def same_status(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    return (a or {}) == b


# -- eviction --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    """What an eviction does: ``delete`` the pod (``take`` one disruption from the budget
    first), or refuse with ``code`` (429 / 403 / 500), ``message`` and ``causes``."""

    delete: bool
    take: bool = False
    code: int = 0
    message: str = ""
    causes: tuple[dict[str, str], ...] = ()


def ignores_budgets(pod: dict[str, Any]) -> bool:
    """Pods Kubernetes evicts without consulting a budget: finished, pending, terminating."""
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    return phase in ("Succeeded", "Failed", "Pending") or bool(meta(pod).get("deletionTimestamp"))


def decide(pod: dict[str, Any], pdbs: list[dict[str, Any]]) -> Decision:
    """Whether the eviction of ``pod`` may proceed, given the budgets of its namespace."""
    if ignores_budgets(pod):
        return Decision(delete=True)
    matching = [p for p in pdbs if covers(p, pod)]
    if not matching:
        return Decision(delete=True)
    if len(matching) > 1:
        return Decision(False, code=500, message="This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")
    pdb = matching[0]
    st = pdb.get("status") or {}
    name = meta(pdb).get("name", "")
    if int(st.get("observedGeneration") or 0) < int(meta(pdb).get("generation") or 1):
        return Decision(False, code=429, message=EVICTION_REFUSED, causes=({"reason": "DisruptionBudget", "message": f"The disruption budget {name} is still being processed by the server."},))
    current, desired = int(st.get("currentHealthy") or 0), int(st.get("desiredHealthy") or 0)
    if not pod_ready(pod):
        if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
            return Decision(delete=True)
        if current >= desired and desired > 0:
            return Decision(delete=True)  # IfHealthyBudget (the default): the budget holds without it
    allowed = int(st.get("disruptionsAllowed") or 0)
    if allowed < 0:
        return Decision(False, code=403, message="pdb disruptions allowed is negative")
    if len(st.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        return Decision(False, code=403, message="DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        return Decision(
            False,
            code=429,
            message=EVICTION_REFUSED,
            causes=({"reason": "DisruptionBudget", "message": f"The disruption budget {name} needs {desired} healthy pods and has {current} currently"},),
        )
    return Decision(delete=True, take=True)


def take_disruption(pdb: dict[str, Any], pod_name: str, now: dt.datetime) -> dict[str, Any] | None:
    """``pdb`` with one disruption taken for ``pod_name`` (None when none is left)."""
    st = pdb.setdefault("status", {})
    allowed = int(st.get("disruptionsAllowed") or 0)
    if allowed <= 0:
        return None
    st["disruptionsAllowed"] = allowed - 1
    st.setdefault("disruptedPods", {})[pod_name] = _rfc3339(now)
    return pdb


# -- validation ------------------------------------------------------------------------


def _check_int_or_percent(c: Causes, field: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int | str):
        c.type_error(field, "an integer or a percentage", v)
    elif isinstance(v, int) and v < 0:
        c.invalid(field, v, "must be greater than or equal to 0")
    elif isinstance(v, str):
        s = v.strip()
        if s.endswith("%"):
            try:
                pct = int(s[:-1])
            except ValueError:
                c.invalid(field, v, "a valid percent string must be a numeric string followed by an ending '%'")
                return
            if not 0 <= pct <= 100:
                c.invalid(field, v, "must not be greater than 100%")
        elif not s.isdigit():
            c.invalid(field, v, "a valid percent string must be a numeric string followed by an ending '%'")


@checks("poddisruptionbudgets")
def check_pdb(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        c.type_error("spec", "an object", spec)
        return
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        c.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set")
    for k in ("minAvailable", "maxUnavailable"):
        if spec.get(k) is not None:
            _check_int_or_percent(c, f"spec.{k}", spec[k])
    sel = spec.get("selector")
    if sel is not None and not isinstance(sel, dict):
        c.type_error("spec.selector", "an object", sel)
    for i, e in enumerate((sel or {}).get("matchExpressions") or [] if isinstance(sel, dict) else []):
        if not isinstance(e, dict) or e.get("operator") not in ("In", "NotIn", "Exists", "DoesNotExist"):
            c.unsupported(f"spec.selector.matchExpressions[{i}].operator", (e or {}).get("operator") if isinstance(e, dict) else e, ("In", "NotIn", "Exists", "DoesNotExist"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        c.unsupported("spec.unhealthyPodEvictionPolicy", policy, ("IfHealthyBudget", "AlwaysAllow"))
