"""edgecontroller's routing logic: what each node needs and what must be sent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.names import ObjectRef
from edgebus.objects import CONFIGMAPS, ENDPOINTS, NODES, PODS, SECRETS, SERVICES
from services.edgecontroller.logic import Index, Sent, content_hash, diff, downstream_content


def pod(name: str, node: str | None, cms: tuple[str, ...] = (), secrets: tuple[str, ...] = (), status: str = "") -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "busybox", "envFrom": [{"secretRef": {"name": s}} for s in secrets]}]}
    if node:
        spec["nodeName"] = node
    spec["volumes"] = [{"name": f"v{i}", "configMap": {"name": c}} for i, c in enumerate(cms)]
    o = {"metadata": {"name": name, "namespace": "default", "resourceVersion": "1"}, "spec": spec}
    if status:
        o["status"] = {"phase": status}
    return o


def cm(name: str, v: str = "1", ns: str = "default") -> dict:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"}, "data": {"v": v}}


def send(index: Index, node: str, sent: dict, refs=None) -> list:
    acts = diff(index, node, sent, refs)
    for a in acts:
        sent[a.ref] = Sent(a.hash, a.delete)
    return acts


def live(sent: dict) -> set[ObjectRef]:
    return {r for r, s in sent.items() if not s.deleted}


P = lambda n: ObjectRef("pods", "default", n)  # noqa: E731
C = lambda n: ObjectRef("configmaps", "default", n)  # noqa: E731
S = lambda n: ObjectRef("secrets", "default", n)  # noqa: E731


def test_node_gets_its_pods_and_their_references_only() -> None:
    ix = Index()
    ix.apply(CONFIGMAPS, cm("a"), deleted=False)
    ix.apply(CONFIGMAPS, cm("unused"), deleted=False)
    ix.apply(SECRETS, {"metadata": {"name": "s", "namespace": "default"}, "data": {}}, deleted=False)
    ix.apply(CONFIGMAPS, cm("a", ns="other"), deleted=False)  # same name, other namespace
    ix.apply(PODS, pod("web", "n1", ("a", "missing"), ("s",)), deleted=False)
    ix.apply(PODS, pod("db", "n2"), deleted=False)
    sent: dict = {}
    send(ix, "n1", sent)
    assert live(sent) == {P("web"), C("a"), S("s")}
    assert ix.desired_refs("n2") == {P("db")}


def test_unreferenced_configmap_and_deleted_pod_are_deleted_on_the_node() -> None:
    ix = Index()
    ix.apply(CONFIGMAPS, cm("a"), deleted=False)
    ix.apply(PODS, pod("web", "n1", ("a",)), deleted=False)
    sent: dict = {}
    send(ix, "n1", sent)
    affected = ix.apply(PODS, pod("web", "n1", ()), deleted=False)  # stops using "a"
    assert affected == {"n1": None}
    acts = send(ix, "n1", sent)
    assert [(a.ref, a.delete) for a in acts] == [(P("web"), False), (C("a"), True)]
    ix.apply(PODS, pod("web", "n1"), deleted=True)
    acts = send(ix, "n1", sent)
    assert [(a.ref, a.delete) for a in acts] == [(P("web"), True)]
    assert live(sent) == set()


def test_pod_moving_between_nodes() -> None:
    ix = Index()
    ix.apply(CONFIGMAPS, cm("a"), deleted=False)
    ix.apply(PODS, pod("web", "n1", ("a",)), deleted=False)
    s1: dict = {}
    s2: dict = {}
    send(ix, "n1", s1)
    affected = ix.apply(PODS, pod("web", "n2", ("a",)), deleted=False)
    assert set(affected) == {"n1", "n2"}
    send(ix, "n1", s1)
    send(ix, "n2", s2)
    assert live(s1) == set() and live(s2) == {P("web"), C("a")}


def test_configmap_change_affects_only_nodes_using_it() -> None:
    ix = Index()
    ix.apply(CONFIGMAPS, cm("a"), deleted=False)
    ix.apply(PODS, pod("p1", "n1", ("a",)), deleted=False)
    ix.apply(PODS, pod("p2", "n2", ("a",)), deleted=False)
    ix.apply(PODS, pod("p3", "n3"), deleted=False)
    affected = ix.apply(CONFIGMAPS, cm("a", "2"), deleted=False)
    assert affected == {"n1": {C("a")}, "n2": {C("a")}}


def test_status_only_changes_are_not_sent_down() -> None:
    ix = Index()
    ix.apply(PODS, pod("web", "n1"), deleted=False)
    sent: dict = {}
    send(ix, "n1", sent)
    running = pod("web", "n1", status="Running")
    running["metadata"]["resourceVersion"] = "9"
    running["metadata"]["annotations"] = {"edgebus.io/status-time": "123"}
    ix.apply(PODS, running, deleted=False)
    assert send(ix, "n1", sent) == []
    assert "status" not in downstream_content(PODS, running)
    # nor is the cloud's own bookkeeping while the node is unreachable (its readiness kept aside)
    unreachable = pod("web", "n1", status="Running")
    unreachable["metadata"]["annotations"] = {"edgebus.io/status-time": "123", "edgebus.io/ready-before-unreachable": '{"type":"Ready"}'}
    ix.apply(PODS, unreachable, deleted=False)
    assert send(ix, "n1", sent) == []
    labelled = pod("web", "n1")
    labelled["metadata"]["labels"] = {"a": "b"}
    ix.apply(PODS, labelled, deleted=False)
    assert [a.ref for a in send(ix, "n1", sent)] == [P("web")]


def test_hash_ignores_volatile_metadata() -> None:
    a, b = cm("x"), cm("x")
    b["metadata"]["resourceVersion"] = "99"
    b["metadata"]["generation"] = 7
    assert content_hash(a) == content_hash(b)
    b["data"] = {"v": "2"}
    assert content_hash(a) != content_hash(b)


# Property: following changes with partial diffs leaves every node exactly where a full
# recompute would (no missed deletes, no stale versions).
names_ = st.sampled_from(["a", "b", "c"])
nodes_ = st.sampled_from(["n1", "n2", None])
event = st.one_of(
    st.tuples(st.just("pod"), st.sampled_from(["p1", "p2", "p3"]), nodes_, st.lists(names_, max_size=3).map(tuple), st.booleans()),
    st.tuples(st.just("cm"), names_, st.integers(0, 3).map(str), st.booleans()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(event, max_size=30))
def test_incremental_equals_full(events) -> None:
    ix = Index()
    sent: dict[str, dict] = {"n1": {}, "n2": {}}
    for ev in events:
        if ev[0] == "pod":
            _, name, node, cms, deleted = ev
            affected = ix.apply(PODS, pod(name, node, cms), deleted=deleted)
        else:
            _, name, v, deleted = ev
            affected = ix.apply(CONFIGMAPS, cm(name, v), deleted=deleted)
        for node, refs in affected.items():
            send(ix, node, sent[node], refs)
    for node in ("n1", "n2"):
        want = ix.desired(node)
        assert live(sent[node]) == set(want)
        for ref, content in want.items():
            assert sent[node][ref].hash == content_hash(content)


# -- Services and Endpoints: every node gets every one ------------------------------------

SV = lambda n: ObjectRef("services", "default", n)  # noqa: E731
EP = lambda n: ObjectRef("endpoints", "default", n)  # noqa: E731


def node(name: str, ready: str = "True") -> dict:
    return {"metadata": {"name": name}, "status": {"conditions": [{"type": "Ready", "status": ready}]}}


def svc(name: str, port: int = 80) -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"selector": {"app": name}, "ports": [{"port": port}]}}


def ep(name: str, ip: str = "127.0.0.1") -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 80}]}]}


ND = lambda n: ObjectRef("nodes", None, n)  # noqa: E731


def test_services_and_endpoints_go_to_every_node_new_nodes_included() -> None:
    ix = Index()
    ix.apply(NODES, node("n1"), deleted=False)
    affected = ix.apply(SERVICES, svc("web"), deleted=False)
    assert affected == {"n1": {SV("web")}}
    ix.apply(ENDPOINTS, ep("web"), deleted=False)
    s1: dict = {}
    send(ix, "n1", s1)
    assert live(s1) == {SV("web"), EP("web"), ND("n1")}  # and its own Node
    # a node that joins later gets everything at once; status updates of a node route only its own Node
    affected = ix.apply(NODES, node("n2"), deleted=False)
    assert affected == {"n2": None}
    s2: dict = {}
    send(ix, "n2", s2, affected["n2"])
    assert live(s2) == {SV("web"), EP("web"), ND("n2")}
    assert ix.apply(NODES, node("n2", "False"), deleted=False) == {"n2": {ND("n2")}}
    assert [a.ref for a in send(ix, "n2", s2, {ND("n2")})] == [ND("n2")]  # a real change: sent
    # an Endpoints change reaches both; a deleted Service is deleted on both
    assert set(ix.apply(ENDPOINTS, ep("web", "127.0.0.2"), deleted=False)) == {"n1", "n2"}
    assert [a.ref for a in send(ix, "n2", s2)] == [EP("web")]
    ix.apply(SERVICES, svc("web"), deleted=True)
    assert [(a.ref, a.delete) for a in send(ix, "n1", s1)] == [(EP("web"), False), (SV("web"), True)]
    send(ix, "n2", s2, {EP("web")})  # n2 is not told of the Service's deletion yet
    # a deleted node is sent deletes (its stream subjects end as tombstones)
    affected = ix.apply(NODES, node("n2"), deleted=True)
    acts = send(ix, "n2", s2, affected["n2"])
    assert {(a.ref, a.delete) for a in acts} == {(EP("web"), True), (SV("web"), True), (ND("n2"), True)}
    assert live(s2) == set()


def test_a_node_gets_its_own_node_without_heartbeat_noise() -> None:
    ix = Index()
    n = {"metadata": {"name": "n1", "labels": {"zone": "a"}, "annotations": {"edgebus.io/status-time.edged": "1", "edgebus.io/status-order.edged": "3@x"}}, "spec": {"taints": []}, "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "t1", "lastTransitionTime": "t0"}]}}
    ix.apply(NODES, n, deleted=False)
    ix.apply(NODES, node("other"), deleted=False)
    s: dict = {}
    send(ix, "n1", s)
    assert live(s) == {ND("n1")}  # not the other node's
    content, _ = ix.prepare(ND("n1"))
    assert content["status"]["conditions"] == [{"type": "Ready", "status": "True", "lastTransitionTime": "t0"}]
    assert "lastHeartbeatTime" in n["status"]["conditions"][0]  # the original is untouched
    assert "annotations" not in content["metadata"]
    beat = {
        **n,
        "metadata": {**n["metadata"], "annotations": {"edgebus.io/status-time.edged": "2", "edgebus.io/status-order.edged": "4@x"}},
        "status": {"conditions": [{**n["status"]["conditions"][0], "lastHeartbeatTime": "t2"}]},
    }
    assert send(ix, "n1", s, ix.apply(NODES, beat, deleted=False)["n1"]) == []  # a heartbeat: nothing sent
    relabelled = {**beat, "metadata": {"name": "n1", "labels": {"zone": "b"}}}
    assert [a.ref for a in send(ix, "n1", s, ix.apply(NODES, relabelled, deleted=False)["n1"])] == [ND("n1")]


mesh_event = st.one_of(
    st.tuples(st.just("node"), st.sampled_from(["n1", "n2"]), st.booleans()),
    st.tuples(st.just("svc"), names_, st.integers(1, 3), st.booleans()),
    st.tuples(st.just("ep"), names_, st.sampled_from(["127.0.0.1", "127.0.0.2"]), st.booleans()),
    st.tuples(st.just("pod"), st.sampled_from(["p1", "p2"]), nodes_, st.lists(names_, max_size=2).map(tuple), st.booleans()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(mesh_event, max_size=30))
def test_incremental_equals_full_with_services_and_nodes(events) -> None:
    ix = Index()
    sent: dict[str, dict] = {"n1": {}, "n2": {}}
    for ev in events:
        if ev[0] == "node":
            affected = ix.apply(NODES, node(ev[1]), deleted=ev[2])
        elif ev[0] == "svc":
            affected = ix.apply(SERVICES, svc(ev[1], ev[2]), deleted=ev[3])
        elif ev[0] == "ep":
            affected = ix.apply(ENDPOINTS, ep(ev[1], ev[2]), deleted=ev[3])
        else:
            _, name, n, cms, deleted = ev
            affected = ix.apply(PODS, pod(name, n, cms), deleted=deleted)
        for n, refs in affected.items():
            send(ix, n, sent[n], refs)
    for n in ("n1", "n2"):
        want = ix.desired(n)
        assert live(sent[n]) == set(want)
        for ref, content in want.items():
            assert sent[n][ref].hash == content_hash(content)


async def test_publish_window_keeps_per_subject_order_and_bounds_inflight() -> None:
    import asyncio

    from services.edgecontroller.window import Window

    w = Window(2)
    gates = {k: asyncio.Event() for k in ("a1", "b", "a2", "c")}
    log: list[str] = []

    def sender(k: str):
        async def send() -> None:
            log.append(f"start {k}")
            await gates[k].wait()
            log.append(f"done {k}")

        return send

    await w.submit("A", sender("a1"))
    await w.submit("B", sender("b"))
    second_a = asyncio.create_task(w.submit("A", sender("a2")))
    await asyncio.sleep(0.01)
    assert "start a2" not in log, "a subject's next publish waits for the previous one"
    gates["a1"].set()
    await second_a
    third = asyncio.create_task(w.submit("C", sender("c")))
    await asyncio.sleep(0.01)
    assert "start c" not in log, "at most `size` publishes in flight"
    gates["b"].set()
    await third
    assert log[-2:] == ["done b", "start c"], "a slot freed -> the next publish starts"
    gates["a2"].set()
    gates["c"].set()
    await w.drain()
    assert log.index("done a1") < log.index("start a2") and not w.order


async def test_publish_window_surfaces_a_failure() -> None:
    import asyncio

    import pytest

    from services.edgecontroller.window import Window

    w = Window(8)

    async def boom() -> None:
        raise RuntimeError("stream gone")

    async def ok() -> None:
        return None

    await w.submit("A", boom)
    with pytest.raises(RuntimeError, match="stream gone"):
        await asyncio.wait_for(w.failure(), 1)
    with pytest.raises(RuntimeError, match="stream gone"):
        await w.submit("B", ok)


def test_status_bookkeeping_annotations_never_travel_down() -> None:
    from services.edgecontroller.logic import content_hash, downstream_content

    base = {"metadata": {"name": "d", "namespace": "default", "annotations": {"keep": "1"}}, "spec": {}}
    marked = {**base, "metadata": {**base["metadata"], "annotations": {"keep": "1", "edgebus.io/status-order": "5@e", "edgebus.io/twin-order": "{}"}}}
    assert downstream_content(PODS, marked)["metadata"]["annotations"] == {"keep": "1"}
    assert content_hash(downstream_content(PODS, marked)) == content_hash(downstream_content(PODS, base))
