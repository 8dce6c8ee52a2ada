"""A multi-host install, as an operator does it: the wheel built from this tree and installed
with pip; a cloud host and an edge host (network namespaces, one veth link, addresses only
inside them); on the cloud host `edgebus cloud install --systemd` and the unit's command;
on the edge host only the cloud's advertised address and a token: `edgebus node join`,
`edgebus node install --systemd` and the unit's command. The link is real TCP with TLS; a
cut is the link going down; the node's pod keeps running through it and the node catches
up with what changed when the link is back."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import time
from pathlib import Path

import pytest

from edgebus.testing.containerd import skip_reason as containerd_skip_reason
from edgebus.testing.netns import Hosts, unusable
from edgebus.testing.waiting import eventually
from edgebus.testing.wheel import build_wheel, installed_venv

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TICKER = """
apiVersion: v1
kind: Pod
metadata: {name: NAME, namespace: default}
spec:
  nodeName: edge-a
  containers:
    - name: c
      image: docker.io/library/busybox:edgebus
      command: ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]
"""


def unit_command(path: Path) -> tuple[list[str], dict[str, str]]:
    """The ExecStart and Environment of a rendered unit (what systemd would run)."""
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    svc = cp["Service"]
    env = dict(kv.split("=", 1) for kv in shlex.split(svc.get("Environment", "")))
    return shlex.split(svc["ExecStart"]), env


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEBUS_", "VIRTUAL_ENV"))}
    return {**env, **(extra or {})}


def condition(obj: dict, kind: str) -> str | None:
    return next((c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


async def test_cloud_and_edge_on_two_hosts_through_a_cut(tmp_path: Path) -> None:
    why = unusable() or containerd_skip_reason()
    if why:
        pytest.skip(why)
    t0 = time.monotonic()
    bin_dir = installed_venv(build_wheel(tmp_path / "dist"))
    eb = str(bin_dir / "edgebus")
    assert not str(Path(eb).resolve()).startswith(str(Path(__file__).resolve().parents[2] / ".venv")), "the installed wheel, not the dev tree"
    hosts = Hosts.create("cloud", "edge")
    cloud_ip = hosts.address("cloud")
    cloud_dir, node_dir, units = tmp_path / "cloud-host" / "data", tmp_path / "edge-host" / "node", tmp_path / "units"
    env = clean_env()
    try:
        # the cloud host: the unit, then what systemd would run
        hosts.run("cloud", [eb, "--data-dir", str(cloud_dir), "cloud", "install", "--systemd", "--unit-dir", str(units / "cloud"), "--address", cloud_ip, "--grace", "8"], env=env)
        argv, unit_env = unit_command(units / "cloud" / "edgebus-cloud.service")
        assert argv[0] == eb
        cloud = hosts.popen("cloud", argv, env=clean_env(unit_env), log=tmp_path / "cloud.log")

        def on_cloud(*args: str, check: bool = True) -> str:
            return hosts.run("cloud", [eb, "--data-dir", str(cloud_dir), *args], env=env, check=check).stdout

        await eventually(lambda: on_cloud("get", "nodes", check=False) == "No resources found.\n" or None, timeout=90, interval=2, msg="the cloud answers on its address")
        assert cloud.poll() is None
        token = on_cloud("token", "create", "--ttl", "10m", "--uses", "1", "--description", "edge-a").strip()
        started = time.monotonic() - t0

        # the edge host knows the cloud's address and the token, nothing else
        out = hosts.run("edge", [eb, "node", "join", "--cloud", f"{cloud_ip}:6443", "--token", token, "--name", "edge-a", "--node-dir", str(node_dir), "--label", "site=plant-2"], env=env).stdout
        assert out.startswith("node edge-a joined")
        hosts.run("edge", [eb, "node", "install", "--systemd", "--unit-dir", str(units / "edge"), "--node-dir", str(node_dir), "--containerd", "--heartbeat", "2"], env=env)
        argv, unit_env = unit_command(units / "edge" / "edgebus-node.service")
        node = hosts.popen("edge", argv, env=clean_env(unit_env), log=tmp_path / "edge.log")

        def node_obj() -> dict:
            return json.loads(on_cloud("get", "nodes", "edge-a", "-o", "json"))

        await eventually(lambda: condition(node_obj(), "Ready") == "True", timeout=120, interval=2, msg="edge-a Ready in the cloud")
        assert node_obj()["metadata"]["labels"]["site"] == "plant-2"
        conf = (node_dir / "nats" / "nats.conf").read_text()
        assert f"nats-leaf://{cloud_ip}:7422" in conf and "tls:" in conf, "the node dials the advertised address, with TLS"
        (tmp_path / "tick.yaml").write_text(TICKER.replace("NAME", "tick"))
        on_cloud("apply", "-f", str(tmp_path / "tick.yaml"))

        def pod(name: str) -> dict:
            return json.loads(on_cloud("get", "pods", name, "-o", "json"))

        await eventually(lambda: pod("tick")["status"].get("phase") == "Running", timeout=180, interval=2, msg="tick Running on edge-a")

        def ticks() -> int:
            lines = [ln for ln in on_cloud("logs", "tick").splitlines() if ln.startswith("tick ")]
            return int(lines[-1].split()[1]) if lines else 0

        await eventually(lambda: ticks() >= 2, timeout=30, interval=2, msg="tick's logs through the cloud")

        # the cut: the edge host's link goes down
        before = ticks()
        cut_at = time.monotonic()
        hosts.cut("edge")
        await eventually(lambda: condition(node_obj(), "Ready") != "True", timeout=40, interval=2, msg="edge-a NotReady after the cut")
        (tmp_path / "late.yaml").write_text(TICKER.replace("NAME", "late"))
        on_cloud("apply", "-f", str(tmp_path / "late.yaml"))  # desired state changes while the node is away
        await eventually(lambda: time.monotonic() - cut_at > 10, timeout=20)
        assert node.poll() is None and cloud.poll() is None
        cut_for = time.monotonic() - cut_at

        # heal: the node is back, tick ran all along, and late reaches the node and runs
        hosts.heal("edge")
        await eventually(lambda: condition(node_obj(), "Ready") == "True", timeout=60, interval=2, msg="edge-a Ready again")
        await eventually(lambda: pod("late")["status"].get("phase") == "Running", timeout=90, interval=2, msg="the pod created during the cut runs")
        after = await eventually(ticks, timeout=30, interval=2, msg="tick's logs again")
        assert after - before >= cut_for - 2, f"tick kept running through the {cut_for:.0f} s cut ({before} -> {after})"
        status = pod("tick")["status"]
        assert status["phase"] == "Running" and status["containerStatuses"][0]["restartCount"] == 0
        print(f"cloud up in {started:.1f}s (wheel and venv included); whole story {time.monotonic() - t0:.1f}s; cut {cut_for:.1f}s")
    finally:
        hosts.destroy()
        for log in ("cloud.log", "edge.log"):
            p = tmp_path / log
            if p.exists():
                print(f"--- {log} (tail)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:]))
