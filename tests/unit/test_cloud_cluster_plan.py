"""The lab's plan of a cloud on a NATS cluster (``edgebus up --cloud-servers 3``)."""

from __future__ import annotations

from pathlib import Path

from edgebus.bus import Bus
from edgebus.lab import LabPlan
from edgebus.runtime.settings import NatsSettings


def _plan(tmp_path: Path, servers: int) -> LabPlan:
    return LabPlan(data_dir=str(tmp_path), nodes=["edge-1", "edge-2"], base_port=20000, cloud_servers=servers, secure=False, devices=False, containerd=False)


def test_three_servers_with_own_ports_stores_and_routes_to_each_other(tmp_path: Path) -> None:
    plan = _plan(tmp_path, 3)
    servers = {p.name: p for p in plan.processes() if p.name.startswith("cloud/nats")}
    assert sorted(servers) == ["cloud/nats", "cloud/nats-2", "cloud/nats-3"]
    ports = [plan.server_ports(k) for k in range(3)]
    flat = [p for t in ports for p in t]
    assert len(set(flat)) == 9 and ports[0][:2] == (plan.cloud_nats_port, plan.cloud_leaf_port)
    assert set(flat) <= set(plan.all_ports())
    assert len(set(plan.all_ports())) == len(plan.all_ports()), "a port used twice"
    for k in range(3):
        conf = plan.hub_config(k).render()
        assert f'server_name: "cloud-{k + 1}"' in conf and 'name: "edgebus"' in conf
        others = [f"nats-route://127.0.0.1:{ports[j][2]}" for j in range(3) if j != k]
        assert all(o in conf for o in others) and f"nats-route://127.0.0.1:{ports[k][2]}" not in conf
        assert f"{tmp_path}/cloud/nats{'' if k == 0 else f'-{k + 1}'}/js" in conf
    assert [p.ready_port for p in servers.values()] == [t[0] for t in ports]


def test_services_get_every_server_and_r3_and_nodes_every_leafnode_port(tmp_path: Path) -> None:
    plan = _plan(tmp_path, 3)
    svc = next(p for p in plan.processes() if p.name == "cloud/edgecontroller")
    urls = svc.env["EDGEBUS_NATS__URL"].split(",")
    assert urls == plan.cloud_nats_urls and len(urls) == 3
    assert svc.env["EDGEBUS_NATS__REPLICAS"] == "3"
    leaf = plan.leaf_config("edge-1").render()
    for port in plan.cloud_leaf_ports():
        assert f"nats-leaf://127.0.0.1:{port}" in leaf


def test_one_server_is_the_lab_as_before(tmp_path: Path) -> None:
    plan = _plan(tmp_path, 1)
    assert [p.name for p in plan.processes() if p.name.startswith("cloud/nats")] == ["cloud/nats"]
    conf = plan.hub_config().render()
    assert "cluster" not in conf and 'server_name: "cloud"' in conf
    svc = next(p for p in plan.processes() if p.name == "cloud/edgecontroller")
    assert svc.env["EDGEBUS_NATS__URL"] == plan.cloud_nats_url and "EDGEBUS_NATS__REPLICAS" not in svc.env


def test_a_connection_creates_its_replicas_in_its_own_domain_only() -> None:
    cloud = Bus(["nats://a", "nats://b"], name="c", replicas=NatsSettings(url="nats://a,nats://b", replicas=3).replicas)
    assert cloud.replicas_for(1) == 3 and cloud.replicas_for(1, "cloud") == 3
    assert cloud.replicas_for(1, "edge-x") == 1  # another domain (a node's single server)
    assert cloud.replicas_for(5) == 5
    edge = Bus("nats://a", name="e", node="edge-1")
    assert edge.replicas_for(1) == 1
