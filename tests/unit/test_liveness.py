"""Node liveness timers (pure, with a fake clock): deadlines from observed heartbeats, a
full grace period after the cloud was away, bounded work per heartbeat, and the eviction
rules of the node lifecycle."""

from __future__ import annotations

import datetime as dt
import json

from services.cloudhub import logic
from services.cloudhub.liveness import EvictionTimers, Liveness

GRACE = 40.0


def test_a_node_expires_grace_after_its_last_observed_heartbeat() -> None:
    lv = Liveness(GRACE)
    lv.observe("a", 0.0)
    lv.observe("b", 0.0)
    lv.observe("a", 30.0)  # a heartbeat recorded later pushes a's deadline
    assert lv.expired(39.9) == []
    assert lv.expired(40.0) == ["b"]
    assert lv.expired(69.9) == []
    assert lv.expired(70.0) == ["a"]
    assert lv.expired(1000.0) == [], "each node is reported once until observed again"


def test_after_the_cloud_was_away_every_node_gets_a_full_grace_period() -> None:
    lv = Liveness(GRACE)
    for i in range(10):
        lv.observe(f"n{i}", 0.0)
    # the evaluator stalled from t=5 to t=38 (the whole cloud paused 33 s): on waking it holds
    lv.hold(38.0)
    assert lv.expired(45.0) == [], "no node expires right after the pause"
    lv.observe("n0", 50.0)  # heartbeats come back as the outboxes drain
    lv.observe("n1", 52.0)
    assert lv.expired(77.9) == []
    assert sorted(lv.expired(78.0)) == [f"n{i}" for i in range(2, 10)], "the silent ones expire a full grace period after the pause"
    assert lv.expired(90.0) == ["n0"]
    assert lv.expired(92.0) == ["n1"]


def test_a_flood_of_heartbeats_costs_bounded_work_per_heartbeat() -> None:
    lv = Liveness(GRACE)
    nodes = [f"node-{i:04d}" for i in range(1000)]
    t = 0.0
    for rnd in range(20):  # 20 rounds of heartbeats, every 10 s, 1,000 nodes
        for n in nodes:
            lv.observe(n, t)
        t += 10.0
        before = lv.ops
        assert lv.expired(t) == []
        # popping superseded deadlines is amortised over the heartbeats that made them
        assert lv.ops - before <= 1000
    # heap work per heartbeat: one push, at most one pop later
    assert lv.ops <= 2 * 20 * 1000
    assert len(lv) == 1000


def test_evaluation_touches_only_due_nodes() -> None:
    lv = Liveness(GRACE)
    for i in range(10_000):
        lv.observe(f"n{i}", float(i % 100))  # deadlines spread over 40..139
    before = lv.ops
    out = lv.expired(40.5)
    assert len(out) == 100  # the nodes observed at t=0
    assert lv.ops - before == 100, "only the due entries are touched, never every node"


def test_forgotten_nodes_never_expire() -> None:
    lv = Liveness(GRACE)
    lv.observe("a", 0.0)
    lv.forget("a")
    assert lv.expired(100.0) == [] and lv.next_due() is None


def test_next_due_respects_the_floor() -> None:
    lv = Liveness(GRACE)
    lv.observe("a", 0.0)
    assert lv.next_due() == 40.0
    lv.hold(10.0)
    assert lv.next_due() == 50.0


def test_eviction_timers() -> None:
    t = EvictionTimers()
    t.arm(("ns", "a"), "u1", 10.0)
    t.arm(("ns", "b"), "u2", 5.0)
    t.arm(("ns", "a"), "u1", 20.0)  # re-armed later
    assert t.due(6.0) == [(("ns", "b"), "u2")]
    assert t.due(15.0) == []
    t.disarm(("ns", "a"))
    assert t.due(30.0) == [] and len(t) == 0


# -- the rules -------------------------------------------------------------------------------

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
UNREACHABLE_NE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}


def pod(tolerations: list | None = None) -> dict:
    return {"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "n", "tolerations": tolerations or []}, "status": {"phase": "Running", "conditions": [{"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "True"}]}}


def test_unreachable_nodes_evict_only_pods_that_opted_in() -> None:
    base = NOW.timestamp()
    assert logic.eviction_at(pod(), [UNREACHABLE_NE]) is None, "the default: pods stay on an unreachable edge node"
    forever = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
    assert logic.eviction_at(pod(forever), [UNREACHABLE_NE]) is None
    failover = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]
    assert logic.eviction_at(pod(failover), [UNREACHABLE_NE]) == base + 60
    # a NoExecute taint someone added: untolerated means now, as in Kubernetes
    user = {"key": "maintenance", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
    assert logic.eviction_at(pod(), [user]) == base
    assert logic.eviction_at(pod(), [{"key": "x", "effect": "NoSchedule"}]) is None


def test_unreachable_marks_pods_not_ready_and_the_node_back_restores_them() -> None:
    p = pod()
    out = logic.pod_not_ready(p, "n", NOW)
    assert out is not None
    conds = {c["type"]: c for c in out["status"]["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["ContainersReady"]["status"] == "True"
    assert json.loads(out["metadata"]["annotations"][logic.READY_BEFORE])["status"] == "True"
    assert logic.pod_not_ready(out, "n", NOW) is None, "already marked"
    back = logic.pod_ready_restored(out)
    assert back is not None and [c["status"] for c in back["status"]["conditions"]] == ["True", "True"]
    assert logic.READY_BEFORE not in back["metadata"]["annotations"]
    assert logic.pod_ready_restored(back) is None


def test_mark_unreachable_checks_no_heartbeat_landed_meanwhile() -> None:
    node = logic.new_node("n", {}, None)
    logic.set_ready(node, "True", "EdgeReady", "", NOW, heartbeat=True)
    hb = logic.ready_condition(node)["lastHeartbeatTime"]  # type: ignore[index]
    assert logic.mark_unreachable(dict(node), "2025-01-01T00:00:00Z", NOW) is None
    out = logic.mark_unreachable(node, hb, NOW + dt.timedelta(seconds=41))
    assert out is not None and logic.ready_condition(out)["status"] == "Unknown"  # type: ignore[index]
    assert {(t["key"], t["effect"]) for t in out["spec"]["taints"]} == {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")}
    assert logic.without_lifecycle_taints(out) and "taints" not in out["spec"]


def test_heartbeat_freshness_is_judged_on_the_clouds_clock() -> None:
    assert logic.heartbeat_fresh_at(NOW - dt.timedelta(seconds=10), NOW, GRACE)
    assert not logic.heartbeat_fresh_at(NOW - dt.timedelta(seconds=41), NOW, GRACE)
    assert logic.heartbeat_fresh_at(None, NOW, GRACE)


def test_leaf_up_from_a_leafz_answer() -> None:
    from services.edgehub.logic import leaf_up

    def answer(leafs: object) -> dict[str, object]:
        return {"server": {"name": "edge-1"}, "data": {"server_id": "N", "leafnodes": 1, "leafs": leafs}}

    assert leaf_up(answer([{"name": "cloud", "is_spoke": True, "account": "EDGE"}])) is True
    assert leaf_up(answer([])) is False
    assert leaf_up({"server": {}, "data": {"leafnodes": 0}}) is False  # no leafs key: none
    # a site server's member nodes dial it (not spokes): that is not its link to the cloud
    assert leaf_up(answer([{"name": "edge-2", "is_spoke": False, "account": "EDGE"}])) is False
    assert leaf_up(answer([{"name": "cloud", "is_spoke": True, "account": "SYS"}])) is False
    assert leaf_up({"error": {"code": 503}}) is None
    assert leaf_up(answer("garbage")) is None
    assert leaf_up(b"not json") is None
