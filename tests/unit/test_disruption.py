"""PodDisruptionBudget rules (pure): the status a budget gets from its pods, and whether an
eviction may go ahead — Kubernetes' numbers and messages."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from edgebus.errors import Conflict, Invalid
from edgebus.objects import PODDISRUPTIONBUDGETS
from edgebus.objects import binding as B
from edgebus.objects import disruption as D
from edgebus.objects.validation import validate

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def pdb(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "generation": 1}, "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


def pod(name: str, *, ready: bool = True, app: str = "web", phase: str = "Running", deleting: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "default", "labels": {"app": app}, "uid": f"u-{name}"}
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    return {"metadata": md, "spec": {"nodeName": "n"}, "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


PODS = [pod("w1"), pod("w2"), pod("w3", ready=False), pod("other", app="db"), pod("done", phase="Succeeded")]


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ({"minAvailable": 2}, (3, 2, 2, 0)),
        ({"minAvailable": 1}, (3, 1, 2, 1)),
        ({"minAvailable": "50%"}, (3, 2, 2, 0)),  # 1.5 rounded up
        ({"maxUnavailable": 1}, (3, 2, 2, 0)),
        ({"maxUnavailable": "34%"}, (3, 1, 2, 1)),  # 1.02 rounded up: 2 may be down
        ({}, (3, 0, 2, 2)),
    ],
)
def test_status_numbers(spec: dict[str, Any], want: tuple[int, int, int, int]) -> None:
    st = D.status(pdb(**spec), PODS, NOW)
    assert (st["expectedPods"], st["desiredHealthy"], st["currentHealthy"], st["disruptionsAllowed"]) == want
    cond = st["conditions"][0]
    assert cond["type"] == "DisruptionAllowed" and cond["status"] == ("True" if want[3] else "False")
    assert cond["reason"] == ("SufficientPods" if want[3] else "InsufficientPods")
    assert st["observedGeneration"] == 1


def test_evicted_pods_count_as_gone_until_they_are() -> None:
    b = pdb(minAvailable=1)
    b["status"] = {"disruptedPods": {"w1": "2026-01-01T11:59:30Z"}}
    assert D.status(b, PODS, NOW)["currentHealthy"] == 1
    assert D.status(b, PODS, NOW + dt.timedelta(seconds=D.DISRUPTED_TIMEOUT + 1))["currentHealthy"] == 2  # timed out
    gone = [pod("w1", deleting=True), *PODS[1:]]
    st = D.status(b, gone, NOW)
    assert "disruptedPods" not in st and st["currentHealthy"] == 1


def _with_status(b: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    b["status"] = D.status(b, pods, NOW)
    return b


def test_eviction_decisions() -> None:
    tight = _with_status(pdb(minAvailable=2), PODS)
    d = D.decide(pod("w1"), [tight])
    assert not d.delete and d.code == 429 and d.message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert d.causes == ({"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"},)
    loose = _with_status(pdb(minAvailable=1), PODS)
    assert D.decide(pod("w1"), [loose]) == D.Decision(delete=True, take=True)
    # pods outside every budget, pending, finished or terminating pods go without one
    assert D.decide(pod("other", app="db"), [tight]).delete
    assert D.decide(pod("w9", phase="Pending"), [tight]).delete
    assert D.decide(pod("w1", deleting=True), [tight]).delete
    # an unready pod may go when the budget holds without it
    assert D.decide(pod("w3", ready=False), [tight]) == D.Decision(delete=True)
    stale = _with_status(pdb(minAvailable=1), PODS)
    stale["metadata"]["generation"] = 2
    d = D.decide(pod("w1"), [stale])
    assert d.code == 429 and "still being processed" in d.causes[0]["message"]
    two = D.decide(pod("w1"), [loose, _with_status(pdb("web2", minAvailable=1), PODS)])
    assert two.code == 500 and "more than one PodDisruptionBudget" in two.message


def test_take_disruption() -> None:
    b = _with_status(pdb(minAvailable=1), PODS)
    out = D.take_disruption(b, "w1", NOW)
    assert out is not None and out["status"]["disruptionsAllowed"] == 0 and out["status"]["disruptedPods"] == {"w1": "2026-01-01T12:00:00Z"}
    assert D.take_disruption(out, "w2", NOW) is None


def test_pdb_validation() -> None:
    validate(PODDISRUPTIONBUDGETS, {**pdb(minAvailable="30%"), "apiVersion": "policy/v1", "kind": "PodDisruptionBudget"})
    for spec in ({"minAvailable": 1, "maxUnavailable": 1}, {"minAvailable": "150%"}, {"maxUnavailable": -1}, {"minAvailable": "x"}):
        with pytest.raises(Invalid):
            validate(PODDISRUPTIONBUDGETS, pdb(**spec))


def test_binding_rules() -> None:
    p = {"metadata": {"name": "p", "uid": "u"}, "spec": {}, "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}}
    out = B.bind(p, "edge-1", uid="u", annotations={"a": "b"}, now=NOW)
    assert out["spec"]["nodeName"] == "edge-1" and out["metadata"]["annotations"] == {"a": "b"}
    assert out["status"]["conditions"] == [{"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2026-01-01T12:00:00Z"}]
    with pytest.raises(Conflict, match='pod p is already assigned to node "edge-1"'):
        B.bind(out, "edge-2")
    with pytest.raises(Conflict, match="Precondition failed"):
        B.bind({"metadata": {"name": "q", "uid": "u1"}, "spec": {}}, "edge-1", uid="u2")
    with pytest.raises(Conflict, match="is being deleted"):
        B.bind({"metadata": {"name": "q", "deletionTimestamp": "x"}, "spec": {}}, "edge-1")
