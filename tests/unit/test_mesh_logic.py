"""Service discovery rules: Endpoints from pods (cloud), the service table, addresses,
balancing and DNS names (edge), tunnel frames, and DNS answers to bad input."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import dns.flags
import dns.message
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus.errors import Invalid
from edgebus.objects import ENDPOINTS, SERVICES, tables
from edgebus.objects.services import Endpoint, ServicePort, endpoints_for_port, lb_policy
from edgebus.objects.validation import validate
from services.edgemesh import logic
from services.edgemesh.dns import Resolver, Upstream, parse_upstreams
from services.edgemesh.tunnel import DATA, RST, frame, parse_frame
from services.endpointcontroller import logic as epc


def svc(name: str = "web", ns: str = "default", *, target: object = "http", selector: dict | None = None, created: str = "2026-01-01T00:00:00Z", policy: str | None = None, ports: list | None = None) -> dict:
    md: dict = {"name": name, "namespace": ns, "creationTimestamp": created}
    if policy:
        md["annotations"] = {"edgebus.io/lb-policy": policy}
    spec = {"ports": ports or [{"name": "http", "port": 8080, "targetPort": target}]}
    if selector is not False:
        spec["selector"] = selector or {"app": name}
    return {"metadata": md, "spec": spec}


def pod(name: str, node: str, port: int = 18080, *, app: str = "web", ready: bool = True, ip: str = "127.0.0.1", phase: str = "Running", terminating: bool = False) -> dict:
    md: dict = {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": app}}
    if terminating:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": md,
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": phase, "podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


# -- endpointcontroller ------------------------------------------------------------------


def test_subsets_group_pods_by_resolved_port_and_split_readiness() -> None:
    pods = [
        pod("a", "n1", 18081),
        pod("b", "n2", 18082, ready=False),
        pod("c", "n2", 18081, ip="127.0.0.3"),
        pod("other", "n1", app="db"),
        pod("done", "n1", phase="Succeeded"),
        pod("going", "n1", terminating=True),
        {**pod("noip", "n1"), "status": {"phase": "Pending"}},
    ]
    subsets = epc.subsets(svc(), pods)
    assert subsets == [
        {
            "addresses": [
                {"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}, "nodeName": "n1"},
                {"ip": "127.0.0.3", "targetRef": {"kind": "Pod", "namespace": "default", "name": "c", "uid": "uid-c"}, "nodeName": "n2"},
            ],
            "ports": [{"name": "http", "port": 18081, "protocol": "TCP"}],
        },
        {
            "notReadyAddresses": [{"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}, "nodeName": "n2"}],
            "ports": [{"name": "http", "port": 18082, "protocol": "TCP"}],
        },
    ]
    # a numeric targetPort needs no container port; an unknown name selects no port
    assert epc.subsets(svc(target=9000), [pod("a", "n1")])[0]["ports"] == [{"name": "http", "port": 9000, "protocol": "TCP"}]
    assert epc.subsets(svc(target="nope"), [pod("a", "n1")]) == []
    assert epc.subsets(svc(selector=False), [pod("a", "n1")]) == []  # type: ignore[arg-type]


def test_endpoint_index_reconciles_only_affected_services_and_only_its_own_endpoints() -> None:
    ix = epc.Index()
    assert ix.apply("services", svc("web"), deleted=False) == {("default", "web")}
    ix.apply("services", svc("db", selector={"app": "db"}), deleted=False)
    assert ix.apply("pods", pod("a", "n1"), deleted=False) == {("default", "web")}
    act = ix.reconcile(("default", "web"))
    assert act is not None and act.op == epc.CREATE and act.endpoints is not None
    assert act.endpoints["metadata"]["annotations"] == {"edgebus.io/managed-by": "endpointcontroller"}
    ix.apply("endpoints", act.endpoints, deleted=False)
    assert ix.reconcile(("default", "web")) is None  # stored = desired: no write
    # a pod that changes its labels leaves the old Service and joins the new one
    assert ix.apply("pods", pod("a", "n1", app="db"), deleted=False) == {("default", "web"), ("default", "db")}
    act = ix.reconcile(("default", "web"))
    assert act is not None and act.op == epc.UPDATE and act.endpoints is not None and act.endpoints["subsets"] == []
    # deleting the Service deletes its Endpoints; a user's Endpoints (no selector) are never touched
    ix.apply("services", svc("web"), deleted=True)
    assert ix.reconcile(("default", "web")) == epc.Action(epc.DELETE, "default", "web", None)
    ix.apply("services", svc("ext", selector=False), deleted=False)  # type: ignore[arg-type]
    ix.apply("endpoints", {"metadata": {"name": "ext", "namespace": "default"}, "subsets": []}, deleted=False)
    assert ix.reconcile(("default", "ext")) is None


# -- validation and tables -----------------------------------------------------------------


def test_service_and_endpoints_validation() -> None:
    validate(SERVICES, svc())
    validate(ENDPOINTS, {"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "127.0.0.1", "nodeName": "edge-1"}], "ports": [{"port": 80}]}]})
    bad = [
        ({"metadata": {"name": "web"}}, "spec: Required value"),
        (svc(ports=[{"port": 70000}]), "spec.ports[0].port"),
        (svc(ports=[{"name": "a", "port": 80}, {"port": 81}]), "spec.ports[1].name: Required value"),
        (svc(ports=[{"name": "a", "port": 80, "targetPort": "Not_A_Name"}]), "spec.ports[0].targetPort"),
        (svc(policy="sticky"), "edgebus.io/lb-policy"),
        (svc(ports=[{"name": "a", "port": 80, "protocol": "ICMP"}]), "spec.ports[0].protocol"),
    ]
    for obj, msg in bad:
        with pytest.raises(Invalid, match=msg.replace("[", r"\[").replace("]", r"\]")):
            validate(SERVICES, obj)
    with pytest.raises(Invalid, match="must be a valid IP address"):
        validate(ENDPOINTS, {"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "not-an-ip"}]}]})


def test_kubectl_columns_for_services_and_endpoints() -> None:
    headers, rows = tables.rows("services", [svc()], wide=True)
    assert headers == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert rows[0][:5] == ["web", "ClusterIP", "<none>", "<none>", "8080/TCP"] and rows[0][6] == "app=web"
    ep = {"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": f"127.0.0.{i}"} for i in range(1, 6)], "ports": [{"port": 80}]}]}
    assert tables.rows("endpoints", [ep])[1][0][1] == "127.0.0.1:80,127.0.0.2:80,127.0.0.3:80 + 2 more..."


# -- the edge's table --------------------------------------------------------------------------


def endpoints(name: str, *addrs: tuple[str, int, str, bool, str]) -> dict:
    subsets = []
    for ip, port, node, ready, podname in addrs:
        a = {"ip": ip, "nodeName": node, "targetRef": {"kind": "Pod", "namespace": "default", "name": podname}}
        subsets.append({("addresses" if ready else "notReadyAddresses"): [a], "ports": [{"name": "http", "port": port}]})
    return {"metadata": {"name": name, "namespace": "default"}, "subsets": subsets}


def test_table_local_readiness_overrides_and_tunnel_targets() -> None:
    eps = endpoints("web", ("127.0.0.1", 18081, "n1", True, "a"), ("127.0.0.1", 18082, "n2", True, "b"), ("127.0.0.1", 18083, "n1", False, "c"))
    # the node's own latest report: a went NotReady, c became Ready (not yet in the cloud's Endpoints)
    local = [pod("a", "n1", ready=False), pod("c", "n1", ready=True), {**pod("b", "n2", ready=False)}]
    t = logic.build_table("n1", [svc()], [eps], local, "127.41.0.0/16")
    entry = t.lookup("default", "web")
    assert entry is not None and ipaddress.ip_address(entry.address) in ipaddress.ip_network("127.41.0.0/16")
    ready = {(e.port, e.node) for e in entry.ports[0].ready}
    assert ready == {(18082, "n2"), (18083, "n1")}  # b's readiness is n2's to say, not a pod copy on n1
    assert t.local_targets == {("127.0.0.1", 18081), ("127.0.0.1", 18083)}
    assert (entry.address, 8080) in t.listeners
    # a pod with no local status report keeps the Endpoints' word
    t2 = logic.build_table("n1", [svc()], [eps], [{"metadata": {"name": "a", "namespace": "default"}, "spec": {"nodeName": "n1"}}], "127.41.0.0/16")
    assert {(e.port, e.ready) for e in t2.services[("default", "web")].ports[0].endpoints if e.node == "n1"} == {(18081, True), (18083, False)}


def test_unnamed_service_port_matches_the_only_endpoint_port() -> None:
    ep = {"metadata": {"name": "x", "namespace": "default"}, "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 9000}]}]}
    assert endpoints_for_port(ep, ServicePort("", 80, "TCP", 9000)) == [Endpoint("127.0.0.1", 9000, "", True, None)]


def test_addresses_are_stable_unique_and_in_range() -> None:
    many = [svc(f"s{i}", created=f"2026-01-01T00:00:{i % 60:02d}Z") for i in range(300)]
    a = logic.allocate(many, "127.41.0.0/16")
    b = logic.allocate(list(reversed(many)), "127.41.0.0/16")
    assert a == b and len(set(a.values())) == 300
    net = ipaddress.ip_network("127.41.0.0/16")
    assert all(ipaddress.ip_address(x) in net and x not in ("127.41.0.0", "127.41.255.255") for x in a.values())
    # in a tiny range collisions are certain: the older Service keeps its address
    small = [svc("old", created="2026-01-01T00:00:00Z"), svc("new", created="2026-02-01T00:00:00Z")]
    only_old = logic.allocate(small[:1], "127.41.0.0/29")
    both = logic.allocate(small, "127.41.0.0/29")
    assert both[("default", "old")] == only_old[("default", "old")] and len(set(both.values())) == 2


def test_round_robin_and_random_balancing_and_fallback_order() -> None:
    eps = [Endpoint("127.0.0.1", p, "n1", True, None) for p in (1, 2, 3)] + [Endpoint("127.0.0.1", 4, "n1", False, None)]
    port = logic.PortEntry("http", 80, "TCP", tuple(eps))
    b = logic.Balancer(random.Random(1))
    firsts = [b.order(("d", "s"), "round-robin", port, 3)[0].port for _ in range(6)]
    assert firsts == [1, 2, 3, 1, 2, 3]
    assert [e.port for e in b.order(("d", "s"), "round-robin", port, 3)] == [1, 2, 3]  # the rest follow as fall-backs
    counts = Counter(b.order(("d", "s"), "random", port, 1)[0].port for _ in range(600))
    assert set(counts) == {1, 2, 3} and min(counts.values()) > 120  # never the NotReady one
    assert lb_policy(svc(policy="random")) == "random" and lb_policy(svc()) == "round-robin"


@pytest.mark.parametrize(
    ("qname", "kind", "service"),
    [
        ("web.default.svc.cluster.local.", logic.ANSWER, ("default", "web")),
        ("WEB.Default.SVC.cluster.local", logic.ANSWER, ("default", "web")),
        ("web.default", logic.ANSWER, ("default", "web")),
        ("web", logic.ANSWER, ("default", "web")),
        ("db.other", logic.ANSWER, ("other", "db")),
        ("db", logic.FORWARD, None),  # not in the default namespace
        ("nope.default.svc.cluster.local", logic.NXDOMAIN, None),
        ("x.web.default.svc.cluster.local", logic.NXDOMAIN, None),
        ("cluster.local", logic.NXDOMAIN, None),
        ("example.org", logic.FORWARD, None),
        ("nope.default", logic.FORWARD, None),
        ("", logic.FORWARD, None),
    ],
)
def test_dns_names(qname: str, kind: str, service: tuple[str, str] | None) -> None:
    known = {("default", "web"), ("other", "db")}
    r = logic.resolve_name(qname, "cluster.local", "default", lambda ns, n: (ns, n) in known)
    assert (r.kind, r.service) == (kind, service)


# -- tunnel frames and DNS under bad input -----------------------------------------------


def test_frames_round_trip_and_garbage_is_an_error_not_a_crash() -> None:
    assert parse_frame(frame(DATA, 42, b"abc")) == (DATA, 42, b"abc")
    assert parse_frame(frame(RST, 0)) == (RST, 0, b"")
    for junk in (b"", b"D", b"Z" + b"\0" * 8, b"\xff" * 3):
        with pytest.raises(ValueError):
            parse_frame(junk)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_frame_parser_never_raises_anything_but_value_error(data: bytes) -> None:
    try:
        parse_frame(data)
    except ValueError:
        pass


def _resolver() -> Resolver:
    t = logic.build_table("n1", [svc()], [], [], "127.41.0.0/16")
    return Resolver(lambda: t, domain="cluster.local", default_namespace="default", upstreams=[], ttl=5)


async def test_dns_answers_formerr_servfail_and_never_raises() -> None:
    r = _resolver()
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    a = dns.message.from_wire(await r.answer(q.to_wire()))  # type: ignore[arg-type]
    assert a.rcode() == dns.rcode.NOERROR and a.flags & dns.flags.AA and a.answer[0][0].address.startswith("127.41.")
    aaaa = dns.message.from_wire(await r.answer(dns.message.make_query("web.default", "AAAA").to_wire()))  # type: ignore[arg-type]
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer
    nx = dns.message.from_wire(await r.answer(dns.message.make_query("x.default.svc.cluster.local", "A").to_wire()))  # type: ignore[arg-type]
    assert nx.rcode() == dns.rcode.NXDOMAIN
    fail = dns.message.from_wire(await r.answer(dns.message.make_query("example.org", "A").to_wire()))  # type: ignore[arg-type]
    assert fail.rcode() == dns.rcode.SERVFAIL  # no upstream configured
    garbage = q.to_wire()[:12] + b"\xff\xff\xff"
    formerr = dns.message.from_wire(await r.answer(garbage))  # type: ignore[arg-type]
    assert formerr.rcode() == dns.rcode.FORMERR and formerr.id == q.id
    assert await r.answer(b"\x01\x02") is None  # not even a header: dropped
    rnd = random.Random(7)
    for _ in range(300):
        await r.answer(rnd.randbytes(rnd.randrange(0, 80)))


def test_upstreams_from_settings_or_resolv_conf(tmp_path) -> None:
    assert parse_upstreams("127.0.0.1:5353, 127.0.0.2") == [Upstream("127.0.0.1", 5353), Upstream("127.0.0.2", 53)]
    rc = tmp_path / "resolv.conf"
    rc.write_text("search x\nnameserver 127.0.0.53\nnameserver ::1\n")
    assert parse_upstreams("", str(rc)) == [Upstream("127.0.0.53"), Upstream("::1")]
