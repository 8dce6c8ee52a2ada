from __future__ import annotations

import ipaddress
import random

import pytest

from edgebus.errors import Invalid
from edgebus.objects import clusterip
from edgebus.objects.checks import Causes

NET = clusterip.parse_cidr("10.96.0.0/12")


def svc(**spec: object) -> dict:
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": {"ports": [{"port": 80}], **spec}}


def causes_of(s: dict, net: ipaddress.IPv4Network = NET) -> list[str]:
    c = Causes()
    clusterip.check_requested(c, s, net)
    return [f"{x['field']}: {x['message']}" for x in c.items]


def test_parse_cidr() -> None:
    assert str(clusterip.parse_cidr(" 10.96.0.0/12 ")) == "10.96.0.0/12"
    assert str(clusterip.parse_cidr("10.96.0.5/24")) == "10.96.0.0/24"  # host bits ignored
    for bad in ("fd00::/108", "10.0.0.0/31", "nonsense", ""):
        with pytest.raises(ValueError):
            clusterip.parse_cidr(bad)


def test_requested_and_kinds() -> None:
    assert clusterip.requested(svc()) is None and clusterip.wants_ip(svc())
    assert clusterip.requested(svc(clusterIP="")) is None
    assert clusterip.requested(svc(clusterIP="10.96.0.10")) == "10.96.0.10"
    assert clusterip.requested(svc(clusterIPs=["10.96.0.11"])) == "10.96.0.11"
    assert not clusterip.wants_ip(svc(clusterIP="None")) and clusterip.is_headless(svc(clusterIP="None"))
    assert not clusterip.wants_ip(svc(type="ExternalName", externalName="example.com"))


def test_user_set_address_checks() -> None:
    assert causes_of(svc(clusterIP="10.96.0.10")) == []
    assert causes_of(svc(clusterIP="None")) == []
    (msg,) = causes_of(svc(clusterIP="192.168.1.1"))
    assert msg == 'spec.clusterIP: Invalid value: "192.168.1.1": provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12'
    assert "not in the valid range" in causes_of(svc(clusterIP="10.96.0.0"))[0]  # the network address
    assert "not in the valid range" in causes_of(svc(clusterIP="10.111.255.255"))[0]  # broadcast
    assert "must be empty, 'None', or a valid IP address" in causes_of(svc(clusterIP="10.96.0.300"))[0]
    assert "may not be set to 'None'" in causes_of(svc(clusterIP="None", type="NodePort"))[0]
    assert "ExternalName" in causes_of(svc(clusterIP="10.96.0.9", type="ExternalName"))[0]
    assert "must match `spec.clusterIP`" in causes_of(svc(clusterIP="10.96.0.9", clusterIPs=["10.96.0.8"]))[0]
    assert "only one" in causes_of(svc(clusterIPs=["10.96.0.8", "10.96.0.9"]))[0]


def test_candidates_cover_the_range_once_with_dot_one_last() -> None:
    net = clusterip.parse_cidr("10.0.0.0/28")  # 14 usable
    for seed in range(20):
        got = list(clusterip.candidates(net, random.Random(seed)))
        assert len(got) == 14 and len(set(got)) == 14
        assert got[-1] == "10.0.0.1"
        assert "10.0.0.0" not in got and "10.0.0.15" not in got
    starts = {next(clusterip.candidates(NET, random.Random(s))) for s in range(50)}
    assert len(starts) > 40  # random starting points spread over the range
    assert list(clusterip.candidates(clusterip.parse_cidr("10.0.0.0/30"))) == ["10.0.0.2", "10.0.0.1"]


def test_assign_and_keep_on_update() -> None:
    s = svc()
    clusterip.assign(s, "10.96.3.4")
    assert s["spec"]["clusterIP"] == "10.96.3.4" and s["spec"]["clusterIPs"] == ["10.96.3.4"] and s["spec"]["ipFamilies"] == ["IPv4"]
    h = svc(clusterIP="None")
    clusterip.assign(h, None)
    assert h["spec"]["clusterIPs"] == ["None"]

    new = svc()  # an update that leaves the address out keeps it
    c = Causes()
    clusterip.keep_on_update(s, new, c)
    assert not c.items and new["spec"]["clusterIP"] == "10.96.3.4" and new["spec"]["clusterIPs"] == ["10.96.3.4"]
    changed = svc(clusterIP="10.96.3.5")
    clusterip.keep_on_update(s, changed, c)
    assert [x["message"] for x in c.items] == ['Invalid value: "10.96.3.5": field is immutable']
    with pytest.raises(Invalid, match='Service "web" is invalid: spec.clusterIP'):
        c.raise_if_any("Service", "web")
