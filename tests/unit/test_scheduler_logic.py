"""The scheduler's predicates and priorities (pure): each constraint decides a placement
that would differ without it, and failures read exactly as kube-scheduler prints them."""

from __future__ import annotations

import random
from typing import Any

import pytest

from services.scheduler import logic
from services.scheduler.cache import Cache
from services.scheduler.model import pod_info


def node(name: str, *, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None, cpu: str = "4", memory: str = "8Gi", pods: str = "110", unschedulable: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}},
    }


def pod(name: str, *, labels: dict[str, str] | None = None, node_name: str = "", cpu: str | None = None, memory: str | None = None, ns: str = "default", owner: str = "", **spec: Any) -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if req:
        c["resources"] = {"requests": req}
    md: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {}}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": f"uid-{owner}", "controller": True}]
    s: dict[str, Any] = {"containers": [c], **spec}
    if node_name:
        s["nodeName"] = node_name
    return {"metadata": md, "spec": s}


class World:
    """A cluster in a scheduler cache: nodes, and pods bound to them."""

    def __init__(self, *nodes: dict[str, Any]) -> None:
        self.cache = Cache()
        for n in nodes:
            self.cache.apply_node(n, False)

    def bind(self, *pods: dict[str, Any]) -> World:
        for p in pods:
            self.cache.apply_pod(p, False)
        return self

    def schedule(self, p: dict[str, Any], seed: int = 0) -> logic.Result:
        info = pod_info(p)
        return logic.schedule(info, self.cache.node_list(), self.cache.bound_for(info), rng=random.Random(seed))

    def place(self, p: dict[str, Any], seed: int = 0) -> str | None:
        return self.schedule(p, seed).node

    def place_and_bind(self, p: dict[str, Any], seed: int = 0) -> str | None:
        n = self.place(p, seed)
        if n is not None:
            self.bind({**p, "spec": {**p["spec"], "nodeName": n}})
        return n


def three() -> World:
    return World(node("a", labels={"zone": "z1", "disk": "ssd", "gen": "3"}), node("b", labels={"zone": "z1", "gen": "5"}), node("c", labels={"zone": "z2", "disk": "hdd", "gen": "7"}))


# -- node selection ------------------------------------------------------------------------


def test_node_selector() -> None:
    w = three()
    assert {w.place(pod("p", nodeSelector={"disk": "ssd"}), seed) for seed in range(10)} == {"a"}
    res = w.schedule(pod("p", nodeSelector={"disk": "nvme"}))
    assert res.node is None
    assert res.message == (
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        ({"key": "zone", "operator": "In", "values": ["z2"]}, {"c"}),
        ({"key": "zone", "operator": "NotIn", "values": ["z2"]}, {"a", "b"}),
        ({"key": "disk", "operator": "Exists"}, {"a", "c"}),
        ({"key": "disk", "operator": "DoesNotExist"}, {"b"}),
        ({"key": "gen", "operator": "Gt", "values": ["4"]}, {"b", "c"}),
        ({"key": "gen", "operator": "Lt", "values": ["4"]}, {"a"}),
    ],
)
def test_required_node_affinity(expr: dict[str, Any], want: set[str]) -> None:
    w = three()
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [expr]}]}}}
    assert {w.place(pod("p", affinity=aff), seed) for seed in range(30)} == want


def test_required_node_affinity_terms_are_ored_and_fields_match_names() -> None:
    w = three()
    terms = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z9"]}]}, {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    assert {w.place(pod("p", affinity=aff), seed) for seed in range(10)} == {"b"}


def test_preferred_node_affinity_wins_among_feasible_nodes() -> None:
    w = three()
    pref = [{"weight": 80, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}}]
    aff = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": pref}}
    assert {w.place(pod("p", affinity=aff), seed) for seed in range(10)} == {"c"}
    # preferred, not required: a pod that cannot go there goes elsewhere
    assert w.place(pod("p", affinity=aff, nodeSelector={"zone": "z1"})) in ("a", "b")


# -- taints, cordon --------------------------------------------------------------------------


def test_taints_and_tolerations() -> None:
    unreachable = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
    gpu = {"key": "gpu", "value": "yes", "effect": "NoSchedule"}
    w = World(node("a", taints=[unreachable]), node("b", taints=[gpu]), node("c", labels={"x": "y"}))
    res = w.schedule(pod("p", nodeSelector={"x": "z"}))
    assert res.message == (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {gpu: yes}, "
        "1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    )
    assert {w.place(pod("p"), s) for s in range(10)} == {"c"}
    tol = [{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]
    assert {w.place(pod("p", tolerations=tol, nodeSelector={"kubernetes.io/hostname": "b"}), s) for s in range(5)} == {"b"}
    assert w.place(pod("p", tolerations=[{"key": "gpu", "operator": "Equal", "value": "no"}], nodeSelector={"kubernetes.io/hostname": "b"})) is None
    everything = [{"operator": "Exists"}]
    assert {w.place(pod("p", tolerations=everything, nodeSelector={"kubernetes.io/hostname": "a"}), s) for s in range(5)} == {"a"}


def test_prefer_no_schedule_is_a_score() -> None:
    soft = {"key": "busy", "effect": "PreferNoSchedule"}
    w = World(node("a", taints=[soft]), node("b"))
    assert {w.place(pod("p"), s) for s in range(10)} == {"b"}
    w = World(node("a", taints=[soft]))
    assert w.place(pod("p")) == "a"


def test_cordoned_node_gets_no_pods() -> None:
    w = World(node("a", unschedulable=True), node("b"))
    assert {w.place(pod("p"), s) for s in range(10)} == {"b"}
    w = World(node("a", unschedulable=True))
    res = w.schedule(pod("p"))
    assert res.message == "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    assert w.place(pod("p", tolerations=tol)) == "a"


# -- resources ---------------------------------------------------------------------------------


def test_requests_against_allocatable_minus_bound_pods() -> None:
    w = World(node("a", cpu="1", memory="1Gi"), node("b", cpu="2", memory="1Gi"))
    w.bind(pod("x", node_name="b", cpu="1500m"))
    # 1 CPU wanted: a has 1 free, b 0.5
    assert {w.place(pod("p", cpu="1"), s) for s in range(10)} == {"a"}
    res = w.schedule(pod("big", cpu="3"))
    assert res.message == "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
    res = w.schedule(pod("big", memory="2Gi", cpu="100m"))
    assert "2 Insufficient memory" in res.message


def test_too_many_pods() -> None:
    w = World(node("a", pods="1"), node("b", pods="2"))
    w.bind(pod("x", node_name="a"))
    assert w.place(pod("p")) == "b"
    w.bind(pod("y", node_name="b"), pod("z", node_name="b"))
    assert "2 Too many pods" in w.schedule(pod("p")).message


def test_least_allocated_spreads_pods_without_requests() -> None:
    w = World(node("a"), node("b"), node("c"))
    placed = [w.place_and_bind(pod(f"p{i}"), seed=i) for i in range(9)]
    assert sorted(placed.count(n) for n in "abc") == [3, 3, 3]


def test_init_containers_and_overhead_count() -> None:
    w = World(node("a", cpu="1"), node("b", cpu="2"))
    p = pod("p", cpu="100m", initContainers=[{"name": "i", "image": "x", "resources": {"requests": {"cpu": "1500m"}}}])
    assert w.place(p) == "b"
    p = pod("q", cpu="800m", overhead={"cpu": "500m"})
    assert w.place(p) == "b"


# -- pod affinity ------------------------------------------------------------------------------


def _term(key: str, labels: dict[str, str], *, weight: int | None = None) -> dict[str, Any]:
    t = {"labelSelector": {"matchLabels": labels}, "topologyKey": key}
    return {"weight": weight, "podAffinityTerm": t} if weight is not None else t


def test_pod_affinity_by_hostname() -> None:
    w = three().bind(pod("db", labels={"app": "db"}, node_name="b"))
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term("kubernetes.io/hostname", {"app": "db"})]}}
    assert {w.place(pod("web", affinity=aff), s) for s in range(10)} == {"b"}
    res = three().schedule(pod("web", affinity=aff))
    assert res.message.startswith("0/3 nodes are available: 3 node(s) didn't match pod affinity rules.")


def test_pod_affinity_by_zone_and_the_first_of_a_group() -> None:
    w = three().bind(pod("db", labels={"app": "db"}, node_name="c"))
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term("zone", {"app": "db"})]}}
    assert {w.place(pod("web", affinity=aff), s) for s in range(10)} == {"c"}
    w = three().bind(pod("db", labels={"app": "db"}, node_name="a"))
    res = w.schedule(pod("web", affinity=aff))
    assert res.node in ("a", "b") and set(res.failures) == {"c"}  # the db's zone, either node
    # a pod that matches its own affinity term may start a group anywhere
    self_aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term("zone", {"app": "web"})]}}
    assert three().place(pod("web", labels={"app": "web"}, affinity=self_aff)) is not None


def test_pod_anti_affinity_by_hostname_and_zone() -> None:
    anti_host = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term("kubernetes.io/hostname", {"app": "web"})]}}
    w = three()
    placed = [w.place_and_bind(pod(f"web{i}", labels={"app": "web"}, affinity=anti_host), seed=i) for i in range(3)]
    assert sorted(placed) == ["a", "b", "c"]  # type: ignore[type-var]
    res = w.schedule(pod("web3", labels={"app": "web"}, affinity=anti_host))
    assert res.node is None
    # the existing pods' own (symmetric) terms are checked first, as kube-scheduler does
    assert res.message == (
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules. "
        "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    )
    w = three().bind(pod("old", labels={"app": "web"}, node_name="a"))
    res = w.schedule(pod("new", labels={"app": "web"}, affinity=anti_host, nodeSelector={"kubernetes.io/hostname": "a"}))
    assert "1 node(s) didn't match pod anti-affinity rules" in res.message
    anti_zone = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term("zone", {"app": "db"})]}}
    w = three()
    first = w.place_and_bind(pod("db0", labels={"app": "db"}, affinity=anti_zone))
    second = w.place_and_bind(pod("db1", labels={"app": "db"}, affinity=anti_zone))
    assert {first, second} in ({"a", "c"}, {"b", "c"})
    assert w.place(pod("db2", labels={"app": "db"}, affinity=anti_zone)) is None


def test_existing_pods_anti_affinity_is_honoured() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term("kubernetes.io/hostname", {"role": "noisy"})]}}
    w = World(node("a"), node("b")).bind(pod("quiet", node_name="a", affinity=anti))
    assert {w.place(pod("n", labels={"role": "noisy"}), s) for s in range(10)} == {"b"}
    w = World(node("a")).bind(pod("quiet", node_name="a", affinity=anti))
    assert "1 node(s) didn't satisfy existing pods anti-affinity rules" in w.schedule(pod("n", labels={"role": "noisy"})).message


def test_preferred_pod_affinity_and_anti_affinity_are_scores() -> None:
    w = three().bind(pod("cache", labels={"app": "cache"}, node_name="a"))
    pref = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [_term("kubernetes.io/hostname", {"app": "cache"}, weight=100)]}}
    assert {w.place(pod("web", affinity=pref), s) for s in range(10)} == {"a"}
    avoid = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [_term("zone", {"app": "cache"}, weight=100)]}}
    assert {w.place(pod("web", affinity=avoid), s) for s in range(10)} == {"c"}


def test_affinity_terms_are_namespaced() -> None:
    w = three().bind(pod("db", labels={"app": "db"}, node_name="b", ns="other"))
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [_term("kubernetes.io/hostname", {"app": "db"})]}}
    assert w.place(pod("web", affinity=aff)) is None  # the db is in another namespace
    t = _term("kubernetes.io/hostname", {"app": "db"})
    t["namespaces"] = ["other"]
    assert w.place(pod("web", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}})) == "b"


# -- topology spread -----------------------------------------------------------------------------


def _spread(key: str, skew: int = 1, *, hard: bool = True) -> list[dict[str, Any]]:
    return [{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]


def test_topology_spread_over_zones() -> None:
    w = three()
    placed = [w.place_and_bind(pod(f"web{i}", labels={"app": "web"}, topologySpreadConstraints=_spread("zone")), seed=i) for i in range(4)]
    zones = {"a": "z1", "b": "z1", "c": "z2"}
    per_zone = [sum(1 for n in placed if zones[n] == z) for z in ("z1", "z2")]  # type: ignore[index]
    assert per_zone == [2, 2], placed


def test_topology_spread_refuses_skew_and_needs_the_label() -> None:
    w = World(node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z2"}))
    w.bind(pod("w0", labels={"app": "web"}, node_name="a"), pod("w1", labels={"app": "web"}, node_name="a"))
    assert w.place(pod("w2", labels={"app": "web"}, topologySpreadConstraints=_spread("zone"))) == "b"
    # the pod may only go to z1; counting z2 as a domain too (nodeAffinityPolicy Ignore), z1 is 2 ahead
    c = _spread("zone")
    c[0]["nodeAffinityPolicy"] = "Ignore"
    res = w.schedule(pod("w2", labels={"app": "web"}, topologySpreadConstraints=c, nodeSelector={"zone": "z1"}))
    assert res.node is None
    # honouring the node selector (the default), z1 is the only domain: no skew
    assert w.place(pod("w2", labels={"app": "web"}, topologySpreadConstraints=_spread("zone"), nodeSelector={"zone": "z1"})) == "a"
    assert "1 node(s) didn't match Pod's node affinity/selector" in res.message
    assert "1 node(s) didn't match pod topology spread constraints." in res.message
    w = World(node("a", labels={"zone": "z1"}), node("b"))
    res = w.schedule(pod("w", labels={"app": "web"}, topologySpreadConstraints=_spread("zone"), nodeSelector={"kubernetes.io/hostname": "b"}))
    assert "didn't match Pod's node affinity/selector" in res.message
    res = World(node("b")).schedule(pod("w", labels={"app": "web"}, topologySpreadConstraints=_spread("zone")))
    assert "1 node(s) didn't match pod topology spread constraints (missing required label)" in res.message


def test_schedule_anyway_spread_and_default_spreading_are_scores() -> None:
    w = World(node("a", cpu="64", memory="64Gi"), node("b"))  # a is much emptier
    placed = [w.place_and_bind(pod(f"w{i}", labels={"app": "web"}, topologySpreadConstraints=_spread("kubernetes.io/hostname", hard=False)), seed=i) for i in range(4)]
    assert sorted(placed.count(n) for n in "ab") == [2, 2], placed
    # pods of one controller spread over hosts by default
    w = World(node("a", cpu="64", memory="64Gi"), node("b"))
    placed = [w.place_and_bind(pod(f"r{i}", owner="rs"), seed=i) for i in range(4)]
    assert placed.count("b") >= 1, placed


# -- the scheduler's pods, the message, the search ---------------------------------------------------


def test_only_pods_for_this_scheduler_and_not_yet_bound() -> None:
    c = Cache()
    assert c.apply_pod(pod("mine"), False)[0] is not None
    assert c.apply_pod(pod("theirs", schedulerName="other-scheduler"), False)[0] is None
    assert c.apply_pod(pod("bound", node_name="a"), False)[0] is None
    gated = pod("gated", schedulingGates=[{"name": "wait"}])
    assert c.apply_pod(gated, False)[0] is None
    assert set(c.pending) == {("default", "mine")}


def test_no_nodes() -> None:
    assert World().schedule(pod("p")).message == "no nodes available to schedule pods"


def test_feasible_nodes_to_find() -> None:
    assert logic.feasible_to_find(50) == 50
    assert logic.feasible_to_find(1000) == 420  # 50% - 1000/125 = 42%
    assert logic.feasible_to_find(10_000) == 500  # at least 5%
    assert logic.feasible_to_find(150) == 100


def test_a_large_cluster_stops_filtering_early_and_rotates() -> None:
    w = World(*(node(f"n{i:04d}") for i in range(1000)))
    res = w.schedule(pod("p"))
    assert res.node is not None and len(res.failures) == 0
    assert res.next_start == logic.feasible_to_find(1000) % 1000


# -- RuntimeClass -----------------------------------------------------------------------


def test_runtime_class_picks_nodes_with_its_handler_and_merges_its_scheduling() -> None:
    from services.scheduler.logic import RUNTIME_CLASS, schedule
    from services.scheduler.model import node_info, pod_info, with_runtime_class

    def n(name: str, handlers: list[str] | None, **labels: str) -> Any:
        st: dict[str, Any] = {"allocatable": {"cpu": "2", "memory": "2Gi", "pods": "10"}}
        if handlers is not None:
            st["runtimeHandlers"] = [{"name": h} for h in handlers]
        return node_info({"metadata": {"name": name, "labels": labels}, "status": st})

    nodes = [n("plain", None), n("both", ["runc", "wasm"], tier="big"), n("small", ["wasm"], tier="small")]
    p = pod_info({"metadata": {"name": "w", "namespace": "default"}, "spec": {"runtimeClassName": "wasm", "containers": [{"name": "c"}]}})
    assert with_runtime_class(p, None) == 'RuntimeClass "wasm" not found'
    rc = {"handler": "wasm", "scheduling": {"nodeSelector": {"tier": "small"}, "tolerations": [{"key": "k", "operator": "Exists"}]}}
    got = with_runtime_class(p, rc)
    assert not isinstance(got, str)
    assert got.runtime_handler == "wasm" and got.node_selector == {"tier": "small"} and got.tolerations[-1]["key"] == "k"
    assert schedule(got, nodes, []).node == "small"
    plain_rc = with_runtime_class(p, {"handler": "wasm"})
    assert not isinstance(plain_rc, str)
    res = schedule(plain_rc, nodes[:1], [])
    assert res.node is None and res.failures["plain"][0].reason == RUNTIME_CLASS
    runc = with_runtime_class(p, {"handler": "runc"})
    assert not isinstance(runc, str) and schedule(runc, [nodes[0], nodes[2]], []).node == "plain"  # advertising nothing = runc
    clash = pod_info({"metadata": {"name": "w"}, "spec": {"runtimeClassName": "wasm", "nodeSelector": {"tier": "big"}, "containers": [{"name": "c"}]}})
    assert "conflicts" in str(with_runtime_class(clash, rc))
    assert with_runtime_class(pod_info({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c"}]}}), None).runtime_handler is None  # type: ignore[union-attr]
