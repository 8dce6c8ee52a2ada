from __future__ import annotations

from edgebus.allinone.ondemand import needed
from edgebus.errors import Invalid
from edgebus.lab.plan import LabPlan, node_dns_address
from edgebus.objects import PODS, poddns
from edgebus.objects.validation import validate
from services.edged import spec as S
from services.edgemesh import logic

import pytest

HOST = poddns.parse_resolv_conf("# the node's\nnameserver 10.255.255.53\nnameserver 10.0.0.2\nsearch corp.example\noptions timeout:2 attempts:3\n")
DNS = ["127.40.140.53"]


def pod(ns: str = "shop", **spec: object) -> dict:
    return {"metadata": {"name": "p", "namespace": ns, "uid": "u1"}, "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def conf(p: dict, cluster_dns: list[str] = DNS) -> poddns.ResolvConf | None:
    return poddns.resolv_conf(p, cluster_dns=cluster_dns, cluster_domain="cluster.local", host=HOST)


def test_parse_host_resolv_conf() -> None:
    assert HOST == poddns.ResolvConf(["10.255.255.53", "10.0.0.2"], ["corp.example"], ["timeout:2", "attempts:3"])


def test_cluster_first_is_the_default() -> None:
    c = conf(pod())
    assert c == poddns.ResolvConf(DNS, ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"], ["ndots:5"])
    assert c.render() == "nameserver 127.40.140.53\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
    assert conf(pod(dnsPolicy="ClusterFirst")) == c


def test_host_network_and_cluster_first_with_host_net() -> None:
    assert conf(pod(hostNetwork=True)) is None  # ClusterFirst on the host network: the node's file
    assert conf(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")) == conf(pod())
    assert conf(pod(dnsPolicy="ClusterFirstWithHostNet")) == conf(pod())


def test_default_and_no_cluster_dns() -> None:
    assert conf(pod(dnsPolicy="Default")) is None
    assert conf(pod(), cluster_dns=[]) is None  # a node without cluster DNS: as Default
    c = conf(pod(dnsPolicy="Default", dnsConfig={"searches": ["extra.example"], "options": [{"name": "timeout", "value": "5"}, {"name": "edns0"}]}))
    assert c == poddns.ResolvConf(HOST.servers, ["corp.example", "extra.example"], ["timeout:5", "attempts:3", "edns0"])


def test_none_uses_only_dns_config() -> None:
    c = conf(pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.2.3.4"], "searches": ["a.example", "a.example"], "options": [{"name": "ndots", "value": "2"}]}))
    assert c == poddns.ResolvConf(["1.2.3.4"], ["a.example"], ["ndots:2"])


def test_cluster_first_with_dns_config_merges_and_caps() -> None:
    c = conf(pod(dnsConfig={"nameservers": ["9.9.9.9", "8.8.8.8", "1.1.1.1"], "options": [{"name": "ndots", "value": "1"}]}))
    assert c.servers == ["127.40.140.53", "9.9.9.9", "8.8.8.8"]  # at most 3
    assert c.options == ["ndots:1"]


def causes(p: dict) -> str:
    with pytest.raises(Invalid) as ei:
        validate(PODS, p)
    return ei.value.message


def test_validation() -> None:
    validate(PODS, pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.2.3.4"]}))
    assert 'spec.dnsPolicy: Unsupported value: "Cluster"' in causes(pod(dnsPolicy="Cluster"))
    assert "must provide `dnsConfig` when `dnsPolicy` is None" in causes(pod(dnsPolicy="None"))
    assert "must provide at least one DNS nameserver when `dnsPolicy` is None" in causes(pod(dnsPolicy="None", dnsConfig={"searches": ["a.example"]}))
    assert 'spec.dnsConfig.nameservers[0]: Invalid value: "dns.example": must be valid IP address' in causes(pod(dnsConfig={"nameservers": ["dns.example"]}))
    assert "must not have more than 3 nameservers" in causes(pod(dnsConfig={"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"]}))
    assert "spec.dnsConfig.searches[0]" in causes(pod(dnsConfig={"searches": ["Bad_Domain"]}))
    assert "must not have more than 32 search paths" in causes(pod(dnsConfig={"searches": [f"d{i}.example" for i in range(33)]}))
    assert "spec.dnsConfig.options[0].name: Required value" in causes(pod(dnsConfig={"options": [{"value": "1"}]}))


def test_sandbox_carries_the_dns_config() -> None:
    p = pod()
    cfg = S.sandbox_config(p, "edge-1", 0, "/tmp/logs", 30, conf(p))
    assert list(cfg.dns_config.servers) == DNS and list(cfg.dns_config.options) == ["ndots:5"]
    assert list(cfg.dns_config.searches)[:3] == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert not S.sandbox_config(p, "edge-1", 0, "/tmp/logs", 30, None).HasField("dns_config")


def test_edgemesh_needed_for_cluster_dns_pods() -> None:
    on = dict(pod(), spec={**pod()["spec"], "nodeName": "edge-1"})
    assert needed("edge-1", [], [], [on]) == {"edgemesh"}
    assert needed("edge-1", [], [], [dict(on, spec={**on["spec"], "dnsPolicy": "Default"})]) == set()
    assert needed("edge-1", [], [], [dict(on, spec={**on["spec"], "hostNetwork": True})]) == set()
    assert needed("edge-2", [], [], [on]) == set()


def test_lab_dns_addresses(tmp_path) -> None:
    plan = LabPlan(data_dir=tmp_path, nodes=["edge-1", "edge-2"], pod_dns=True)
    h1, p1 = plan.mesh_dns("edge-1")
    h2, _ = plan.mesh_dns("edge-2")
    assert p1 == 53 and h1 == node_dns_address(plan.service_cidr("edge-1")) and h1.endswith(".53") and h1 != h2
    assert plan.edged_settings("edge-1")["cluster_dns"] == f'["{h1}"]'
    off = LabPlan(data_dir=tmp_path, nodes=["edge-1"], pod_dns=False)
    assert off.mesh_dns("edge-1") == (off.host, off.mesh_dns_port("edge-1")) and "cluster_dns" not in off.edged_settings("edge-1")


def svc(name: str, **spec: object) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"ports": [{"port": 80}], **spec}}


def test_mesh_reserves_the_dns_address_and_answers_headless_endpoints() -> None:
    services = [svc(f"s{i}") for i in range(253)]
    got = logic.allocate(services, "127.40.140.0/24", frozenset({"127.40.140.53"}))
    assert "127.40.140.53" not in got.values() and len(got) == 253
    eps = {
        "metadata": {"name": "db", "namespace": "default"},
        "subsets": [
            {
                "addresses": [{"ip": "10.1.0.7", "nodeName": "edge-2"}, {"ip": "10.1.0.5", "nodeName": "edge-2"}],
                "notReadyAddresses": [{"ip": "10.1.0.9", "nodeName": "edge-2"}],
                "ports": [{"port": 5432}],
            }
        ],
    }
    t = logic.build_table("edge-1", [svc("db", clusterIP="None", ports=[{"port": 5432}]), svc("web")], [eps], [], "127.40.140.0/24")
    db = t.lookup("default", "db")
    assert db.headless and db.address == "" and db.dns_addresses() == ["10.1.0.5", "10.1.0.7"]
    assert all(k[1] != 5432 for k in t.listeners)  # nothing listens for a headless Service
    assert t.lookup("default", "web").dns_addresses() == [t.lookup("default", "web").address]
