"""Rolling update math, revisions and conditions of the deployment controller."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.deploymentcontroller import logic
from services.deploymentcontroller.logic import RS


@pytest.mark.parametrize(
    ("surge", "unavailable", "n", "want"),
    [
        ("25%", "25%", 10, (3, 2)),  # surge rounds up, unavailability down
        ("25%", "25%", 1, (1, 0)),
        (0, 0, 5, (0, 1)),  # both zero: one may be unavailable
        ("0%", "0%", 5, (0, 1)),
        (2, "50%", 3, (2, 1)),
        ("100%", 0, 4, (4, 0)),
    ],
)
def test_fenceposts(surge: Any, unavailable: Any, n: int, want: tuple[int, int]) -> None:
    assert logic.fenceposts(surge, unavailable, n) == want


def test_new_replica_set_scales_up_within_the_surge() -> None:
    new = RS("new", 0, 0)
    old = RS("old", 10, 10)
    assert logic.new_rs_replicas(10, 3, new, [new, old]) == 3
    # already at replicas + surge: no more
    assert logic.new_rs_replicas(10, 3, RS("new", 3, 0), [RS("new", 3, 0), old]) == 3
    # never past the desired count
    assert logic.new_rs_replicas(4, 10, RS("new", 2, 2), [RS("new", 2, 2), RS("old", 0, 0)]) == 4
    # scaled down when above it
    assert logic.new_rs_replicas(2, 1, RS("new", 5, 5), [RS("new", 5, 5)]) == 2


def test_old_replica_sets_scale_down_keeping_min_available() -> None:
    # 10 desired, maxUnavailable 2: 8 must stay available
    new = RS("new", 3, 0)
    old = RS("old", 10, 10, "2026-01-01T00:00:00Z")
    assert logic.scale_down_old(10, 2, new, [old]) == {"old": 8}
    # the new pods became available: more old ones can go
    assert logic.scale_down_old(10, 2, RS("new", 3, 3), [RS("old", 8, 8)]) == {"old": 5}
    # nothing available to spare
    assert logic.scale_down_old(10, 0, RS("new", 1, 0), [RS("old", 10, 10)]) == {}


def test_unhealthy_old_pods_go_first_and_oldest_first() -> None:
    a = RS("a", 3, 0, "2026-01-01T00:00:00Z")  # all unavailable
    b = RS("b", 5, 5, "2026-01-02T00:00:00Z")
    new = RS("new", 2, 2, "2026-01-03T00:00:00Z")
    out = logic.scale_down_old(8, 1, new, [b, a])
    assert out["a"] == 0  # its unhealthy pods are cleaned up without using the budget
    assert out.get("b", 5) >= 5 - 1


@given(
    desired=st.integers(1, 30),
    surge=st.integers(0, 5),
    unavailable=st.integers(0, 5),
)
def test_a_simulated_rollout_respects_its_bounds_and_finishes(desired: int, surge: int, unavailable: int) -> None:
    if surge == 0 and unavailable == 0:
        unavailable = 1
    unavailable = min(unavailable, desired)
    new, old = RS("new", 0, 0), RS("old", desired, desired)
    for _ in range(200):
        target = logic.new_rs_replicas(desired, surge, new, [new, old])
        new = RS("new", target, new.available)
        assert new.replicas + old.replicas <= desired + surge
        downs = logic.scale_down_old(desired, unavailable, new, [old])
        if "old" in downs:
            old = RS("old", downs["old"], min(old.available, downs["old"]))
        assert new.available + old.available >= desired - unavailable
        new = RS("new", new.replicas, new.replicas)  # the new pods become available
        if new.replicas == desired and old.replicas == 0:
            break
    assert new.replicas == desired and old.replicas == 0


def deployment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 1, "annotations": {"kubernetes.io/change-cause": "v2", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}, **spec},
    }


def test_new_replicaset_carries_hash_revision_and_annotations() -> None:
    rs = logic.new_replicaset(deployment(), "abc12", 4, 1, 1)
    assert rs["metadata"]["name"] == "web-abc12"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": "abc12"}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == "abc12"
    ann = rs["metadata"]["annotations"]
    assert ann["deployment.kubernetes.io/revision"] == "4" and ann["kubernetes.io/change-cause"] == "v2"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in ann
    assert ann["deployment.kubernetes.io/desired-replicas"] == "3" and ann["deployment.kubernetes.io/max-replicas"] == "4"
    assert rs["metadata"]["ownerReferences"][0] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": True, "blockOwnerDeletion": True}
    assert logic.same_template(rs["spec"]["template"], deployment()["spec"]["template"])


def test_rollback_moves_the_old_revision_to_the_history() -> None:
    rs = logic.new_replicaset(deployment(), "abc12", 1, 0, 0)
    ann = logic.revision_annotations(rs, deployment(), 3)
    assert ann is not None and ann["deployment.kubernetes.io/revision"] == "3" and ann["deployment.kubernetes.io/revision-history"] == "1"
    rs["metadata"]["annotations"] = ann
    assert logic.revision_annotations(rs, deployment(), 3) is None


def test_history_limit_deletes_oldest_empty_replicasets() -> None:
    def rs(rev: int, replicas: int) -> dict[str, Any]:
        return {"metadata": {"name": f"r{rev}", "annotations": {"deployment.kubernetes.io/revision": str(rev)}}, "spec": {"replicas": replicas}, "status": {"replicas": replicas}}

    old = [rs(3, 0), rs(1, 0), rs(2, 0), rs(4, 1)]
    assert [r["metadata"]["name"] for r in logic.history_to_delete(deployment(revisionHistoryLimit=1), old)] == ["r1", "r2"]
    assert logic.history_to_delete(deployment(revisionHistoryLimit=5), old) == []


def conds(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def test_conditions() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    d = deployment(progressDeadlineSeconds=60)
    new = {"metadata": {"name": "web-x"}, "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3}}
    st, again = logic.status(d, new, [new], now)
    c = conds(st)
    assert c["Available"]["status"] == "True" and c["Available"]["reason"] == "MinimumReplicasAvailable"
    assert c["Progressing"]["reason"] == "NewReplicaSetAvailable" and c["Progressing"]["message"] == 'ReplicaSet "web-x" has successfully progressed.'
    assert again is None
    # stuck: no progress for longer than the deadline
    slow = {"metadata": {"name": "web-y"}, "status": {"replicas": 1, "availableReplicas": 0}}
    d2 = deployment(progressDeadlineSeconds=60)
    st, again = logic.status(d2, slow, [slow], now, created="web-y")
    assert conds(st)["Progressing"]["reason"] in ("NewReplicaSetCreated", "ReplicaSetUpdated") and again == 60
    d2["status"] = st
    st, again = logic.status(d2, slow, [slow], now + dt.timedelta(seconds=30))
    assert conds(st)["Progressing"]["status"] == "True" and 29 < again < 31
    d2["status"] = st
    st, again = logic.status(d2, slow, [slow], now + dt.timedelta(seconds=61))
    c = conds(st)
    assert c["Progressing"]["status"] == "False" and c["Progressing"]["reason"] == "ProgressDeadlineExceeded"
    assert c["Available"]["status"] == "False" and c["Available"]["reason"] == "MinimumReplicasUnavailable"
    # paused, then resumed
    st, _ = logic.status(deployment(paused=True, progressDeadlineSeconds=600), new, [new], now)
    assert conds(st)["Progressing"]["reason"] == "DeploymentPaused"
    st2, _ = logic.status({**deployment(progressDeadlineSeconds=600), "status": st}, new, [new], now)
    assert conds(st2)["Progressing"]["reason"] in ("DeploymentResumed", "NewReplicaSetAvailable")


def test_templates_compare_as_kubernetes_decodes_them() -> None:
    a = {"metadata": {"labels": {"app": "web", "pod-template-hash": "x"}}, "spec": {"containers": [{"name": "c"}]}}
    b = {"metadata": {"creationTimestamp": None, "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}  # kubectl rollout undo
    assert logic.same_template(a, b)
    assert not logic.same_template(a, {"metadata": {"labels": {"app": "web"}, "annotations": {"x": "y"}}, "spec": {"containers": [{"name": "c"}]}})


def rs_obj(name: str, replicas: int, created: str, *, available: int = 0, desired: int | None = None, max_replicas: int | None = None) -> dict[str, Any]:
    ann = {}
    if desired is not None:
        ann["deployment.kubernetes.io/desired-replicas"] = str(desired)
    if max_replicas is not None:
        ann["deployment.kubernetes.io/max-replicas"] = str(max_replicas)
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": ann}, "spec": {"replicas": replicas}, "status": {"availableReplicas": available}}


def test_proportional_scaling_in_the_middle_of_a_rollout() -> None:
    d = deployment(replicas=20, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    old = rs_obj("old", 8, "2026-01-01T00:00:00Z", available=8, desired=10, max_replicas=13)
    new = rs_obj("new", 5, "2026-01-02T00:00:00Z", desired=10, max_replicas=13)
    assert logic.is_scaling_event(d, [old, new])
    assert logic.scale(d, new, [old]) == {"old": 15, "new": 10}  # 25 = 20 + maxSurge, spread by size
    # scaling down: also in proportion, the larger (and older) ReplicaSet first
    down = deployment(replicas=5, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    assert logic.scale(down, new, [old]) == {"old": 4, "new": 2}
    assert not logic.is_scaling_event(deployment(replicas=10), [old, new])


def test_scaling_one_active_or_saturated() -> None:
    d = deployment(replicas=7)
    only = rs_obj("only", 3, "2026-01-01T00:00:00Z", desired=3)
    empty = rs_obj("empty", 0, "2026-01-02T00:00:00Z")
    assert logic.scale(d, empty, [only]) == {"only": 7}
    assert logic.scale(d, None, [rs_obj("a", 0, "1"), rs_obj("b", 0, "2")]) == {"b": 7}  # none active: the newest
    full = rs_obj("new", 7, "3", available=7, desired=7)
    assert logic.scale(d, full, [rs_obj("old", 2, "1", desired=7)]) == {"old": 0}


def test_rolling_step_without_held_pods_is_the_kubernetes_step() -> None:
    new, old = RS("new", 3, 1), RS("old", 8, 8, "2026-01-01T00:00:00Z")
    want_new = logic.new_rs_replicas(10, 1, new, [new, old])
    stepped = RS("new", want_new, new.available)
    assert logic.rolling_step(10, 1, 2, new, [old]) == (want_new, logic.scale_down_old(10, 2, stepped, [old]))


def test_rolling_step_leaves_an_unreachable_nodes_pods_alone() -> None:
    # 4 replicas, 2 of them on a node that is offline (not Ready, held); maxSurge 1, maxUnavailable 1
    old = RS("old", 4, 2, "2026-01-01T00:00:00Z", held=2)
    # Kubernetes would clean the 2 unhealthy pods up first (deleting them: they would go on
    # running on the node beside their replacements); here the step keeps them
    assert logic.scale_down_old(4, 1, RS("new", 1, 0), [old]) == {"old": 3}
    target, downs = logic.rolling_step(4, 1, 1, RS("new", 0, 0), [old])
    assert target == 1  # the surge over the reachable share (2 + 1 pods there at most)
    target, downs = logic.rolling_step(4, 1, 1, RS("new", 1, 0), [old])
    assert (target, downs) == (1, {"old": 3})  # one reachable old pod goes: 1 of 2 unavailable at most
    # the ReplicaSet's status still counting the held pods available: no more goes
    assert logic.rolling_step(4, 1, 1, RS("new", 1, 0), [RS("old", 4, 4, held=2)]) == (1, {"old": 3})


@given(desired=st.integers(2, 20), held=st.integers(1, 19), surge=st.integers(0, 4), unavailable=st.integers(0, 4))
def test_a_rollout_with_held_pods_finishes_the_reachable_share_then_the_rest(desired: int, held: int, surge: int, unavailable: int) -> None:
    held = min(held, desired - 1)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    unavailable = min(unavailable, desired)
    new, old = RS("new", 0, 0), RS("old", desired, desired - held, held=held)
    reachable = desired - held
    for _ in range(200):
        target, downs = logic.rolling_step(desired, surge, unavailable, new, [old])
        new = RS("new", target, new.available)
        if "old" in downs:
            old = RS("old", downs["old"], min(old.available, downs["old"] - held), held=held)
        assert old.replicas >= held  # the held pods are never scaled away
        assert new.replicas + old.replicas - held <= reachable + surge
        assert new.available + old.available >= reachable - unavailable
        new = RS("new", new.replicas, new.replicas)
        if new.replicas == reachable and old.replicas == held:
            break
    assert (new.replicas, old.replicas) == (reachable, held)
    # the node is back: its pods count again, and the rollout finishes
    old = RS("old", held, held)
    for _ in range(200):
        target, downs = logic.rolling_step(desired, surge, unavailable, new, [old])
        new = RS("new", target, new.available)
        if "old" in downs:
            old = RS("old", downs["old"], min(old.available, downs["old"]))
        assert new.available + old.available >= desired - unavailable
        new = RS("new", new.replicas, new.replicas)
        if new.replicas == desired and old.replicas == 0:
            break
    assert (new.replicas, old.replicas) == (desired, 0)
