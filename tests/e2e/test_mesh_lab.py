"""edgemesh in the lab with real pods (containerd, host network): examples/mesh.yaml applied
with the real CLI; names resolve through edge-1's edgemesh DNS and HTTP reaches the pod on
edge-1 directly and the pod on edge-2 through the NATS tunnel, from the host and from a pod."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

import dns.message
import dns.query
import pytest

from edgebus.testing.containerd import skip_reason
from edgebus.testing.labrun import LabCli
from edgebus.testing.waiting import wait_until

from .conftest import BOTH_MODES

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _needs_containerd() -> None:
    why = skip_reason()
    if why:
        pytest.skip(why)


def resolve(dns_addr: str, name: str) -> str | None:
    host, port = dns_addr.rsplit(":", 1)
    r = dns.query.udp(dns.message.make_query(name, "A"), host, port=int(port), timeout=3)
    return str(r.answer[0][0].address) if r.answer else None


def get(addr: str, port: int) -> str:
    with socket.create_connection((addr, port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode().strip()


def ready_addresses(lab: LabCli) -> int:
    ep = lab.json("get", "endpoints", "hello-web")
    return sum(len(s.get("addresses") or []) for s in ep.get("subsets") or [])


@BOTH_MODES
def test_mesh_with_real_pods_across_two_nodes(lab: LabCli) -> None:
    lab.run("apply", "-f", str(ROOT / "examples" / "mesh.yaml"))
    wait_until(lambda: ready_addresses(lab) == 2, timeout=90, interval=0.5, msg="both hello-web pods Ready in the Endpoints")
    svc = lab.run("get", "svc", "hello-web").stdout
    assert "8080/TCP" in svc
    dns1 = lab.state()["nodes"]["edge-1"]["dns"]
    addr = wait_until(lambda: resolve(dns1, "hello-web.default.svc.cluster.local"), timeout=20, msg="hello-web resolves on edge-1")
    assert resolve(dns1, "hello-web.default") == addr

    def both() -> Counter[str] | None:
        seen = Counter(get(addr, 8080) for _ in range(20))
        return seen if len(seen) == 2 else None

    seen = wait_until(both, timeout=30, interval=0.5, msg="both pods answer through edge-1's mesh")
    assert set(seen) == {"hello from hello-web-1 on edge-1", "hello from hello-web-2 on edge-2"}
    assert seen.most_common()[0][1] == 10  # round-robin

    # from a pod on edge-1 (the node's network: the Service address is the node's loopback)
    wait_until(lambda: "Running" in lab.run("get", "pod", "client").stdout, timeout=60, msg="client pod running")
    outs = {lab.run("exec", "client", "--", "wget", "-qO-", f"http://{addr}:8080/").stdout.strip() for _ in range(4)}
    assert outs == {"hello from hello-web-1 on edge-1", "hello from hello-web-2 on edge-2"}

    # edge-2 has its own address for the same Service, and reaches edge-1's pod through a tunnel
    dns2 = lab.state()["nodes"]["edge-2"]["dns"]
    addr2 = wait_until(lambda: resolve(dns2, "hello-web.default.svc.cluster.local"), timeout=20)
    assert addr2 != addr
    assert {get(addr2, 8080) for _ in range(4)} == set(seen)
