"""edgecontroller's routing logic: what each node needs and what must be sent."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.names import ObjectRef
from edgebus.objects import CONFIGMAPS, PODS, SECRETS
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
