"""`edgebus inspect` and `edgebus top` against a running lab, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgebus.testing.labrun import LabCli
from edgebus.testing.waiting import wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()[1:]]


def test_inspect_views(lab: LabCli) -> None:
    lab.run("apply", "-f", str(ROOT / "examples" / "hello.yaml"))

    def streams() -> dict[tuple[str, str], int]:
        return {(r[0], r[1]): int(r[3]) for r in rows(lab.run("inspect", "streams").stdout) if len(r) >= 4 and r[3].isdigit()}

    def node_keys() -> set[str]:
        return {i["key"] for i in lab.json("node", "objects", "edge-1")["items"]}

    wait_until(lambda: {"/core/v1/configmaps/default/hello-config", "/core/v1/pods/default/hello"} <= node_keys(), timeout=15, msg="hello objects on edge-1")
    n_rbac = len([k for k in node_keys() if k.startswith("/rbac.authorization.k8s.io/")])  # every node holds the RBAC objects
    # ... and its own Node object: what every node holds besides its pods and their sources
    n_own = n_rbac + 1
    s = wait_until(lambda: (x := streams()).get(("edge-1", "EDGEBUS_EDGE_DOWN")) == 2 + n_own and x, timeout=15, msg="hello objects on edge-1's stream")
    # a ConfigMap and a Pod for edge-1, the RBAC objects and the Node of each node, and edgecontroller's fence
    assert s[("cloud", "EDGEBUS_DOWN")] == 2 + 2 * n_own + 1
    assert s[("edge-2", "EDGEBUS_EDGE_DOWN")] == n_own  # only the RBAC objects and its Node
    assert s[("cloud", "EDGEBUS_UP")] > 0 and s[("edge-1", "EDGEBUS_EDGE_UP")] > 0

    # live traffic, decoded from msgpack: edge-1's heartbeats come through the cloud server
    # (sent while the link is up, outside the outbox, as the bare envelope: no headers)
    out = lab.run("inspect", "tail", "edgebus.up.edge-1.heartbeat", "--count", "1", "--seconds", "20", "--headers").stdout
    assert "edgebus.up.edge-1.heartbeat" in out and "Nats-Msg-Id: " not in out and "Edgebus-Up-Seq" not in out
    body = json.loads(out.strip().splitlines()[-1])
    assert body["route"]["operation"] == "keepalive" and body["route"]["source"] == "edgehub" and body["content"]["time"] > 0
    # stored messages of a stream, replayed
    out = lab.run("inspect", "tail", "edgebus.down.edge-1.configmaps.>", "--stream", "EDGEBUS_DOWN", "--count", "1").stdout
    assert "edgebus.down.edge-1.configmaps.default.hello-config" in out and '"greeting": "hello from the cloud"' in out

    node = lab.json("inspect", "node", "edge-1")
    assert node["edgehub"]["link"] == "up" and node["edgehub"]["joined"] is True
    assert n_rbac, "every node holds the cluster's RBAC objects"
    assert node["metamanager"]["objects"] == 2 + n_own
    table = lab.run("inspect", "node", "edge-1").stdout
    assert "link" in table and "up since" in table and "store: objects" in table

    cons = lab.run("inspect", "consumers").stdout
    consumer_rows = {(r[0], r[1], r[2]): r for r in rows(cons.split("\n\n")[0])}
    assert ("cloud", "EDGEBUS_UP", "cloudhub") in consumer_rows
    assert ("edge-1", "EDGEBUS_EDGE_DOWN", "metamanager") in consumer_rows
    lag = {r[0]: r for r in rows(cons.split("\n\n")[1])}
    assert lag["edge-1"][1] == "up" and lag["edge-2"][1] == "up"

    # every service's /metrics says something useful (the lab's ops ports)
    import httpx

    st = lab.state()
    ops = {p["name"]: p for p in st["processes"]}
    assert ops  # process table present
    plan_ports = {"cloud/cloudhub": 4, "edge-1/edgehub": 12, "edge-1/metamanager": 13}
    base = int(st["cloud_nats"].rsplit(":", 1)[1])
    metrics = {n: httpx.get(f"http://127.0.0.1:{base + off}/metrics", timeout=5).text for n, off in plan_ports.items()}
    assert 'edgebus_messages_total{outcome="ok",route="ingest",service="cloudhub"}' in metrics["cloud/cloudhub"]
    assert "edgebus_handler_seconds_bucket" in metrics["cloud/cloudhub"]
    assert 'edgebus_nodes{status="Ready"} 2.0' in metrics["cloud/cloudhub"]
    assert 'edgebus_link_up{node="edge-1"} 1.0' in metrics["edge-1/edgehub"]
    assert 'edgebus_backlog_up{node="edge-1"}' in metrics["edge-1/edgehub"]
    assert 'edgebus_lmdb_bytes{service="metamanager"}' in metrics["edge-1/metamanager"]
    assert 'edgebus_bus_connected{service="metamanager"} 1.0' in metrics["edge-1/metamanager"]

    top = lab.run("top", "--iterations", "1").stdout
    assert "edge-1" in top and "edge-2" in top and "Ready" in top

    lab.run("node", "stop", "edge-2")
    out = lab.run("inspect", "node", "edge-2", check=False)
    assert out.returncode != 0 and "unreachable" in out.stderr
    assert "unreachable" in lab.run("inspect", "consumers").stdout
