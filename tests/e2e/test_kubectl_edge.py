"""The real kubectl against a node's metaserver: reads from the node's LMDB also while the
node is cut off from the cloud; writes forwarded to the cloud while online, and a clear
Status error (not a hang) while offline."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from edgebus import names
from edgebus.cli.kubeconfig import kubeconfig
from edgebus.envelope import Envelope
from edgebus.objects import EVENTS, PODS
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl binary installed")]

MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config, namespace: default}
data: {mode: edge}
---
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: default, labels: {app: demo}}
spec:
  nodeName: edge-1
  containers:
    - name: app
      image: docker.io/library/busybox:edgebus
      envFrom: [{configMapRef: {name: app-config}}]
"""


@pytest.fixture
async def lab(tmp_path: Path):
    rl = await start_lab(tmp_path, proxy=True, devices=False, containerd=False)
    try:
        yield rl
    finally:
        await stop_lab(rl)


class Kubectl:
    def __init__(self, tmp: Path, name: str, server: str, *, ca_file: str | None = None, token: str | None = None) -> None:
        self.config = tmp / f"{name}.kubeconfig"
        ca_pem = Path(ca_file).read_bytes() if ca_file and server.startswith("https://") else None
        self.config.write_text(yaml.safe_dump(kubeconfig(server, name, token=token, ca_pem=ca_pem)))
        self.cache = tmp / f"{name}.cache"

    def argv(self, *args: str) -> list[str]:
        return ["kubectl", "--kubeconfig", str(self.config), "--cache-dir", str(self.cache), "--request-timeout", "20s", *args]

    async def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        cp = await asyncio.to_thread(subprocess.run, self.argv(*args), input=stdin, capture_output=True, text=True, timeout=60)
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}): {cp.stdout}\n{cp.stderr}")
        return cp


async def test_kubectl_on_the_edge_online_and_offline(lab: RunningLab, tmp_path: Path) -> None:
    plan = lab.lab.plan
    cloud = Kubectl(tmp_path, "cloud", plan.apiserver_url, ca_file=plan.ca_file, token=plan.admin_token())
    ident = plan.node_identity("edge-1")
    edge = Kubectl(tmp_path, "edge", f"https://127.0.0.1:{plan.metaserver_port('edge-1')}", ca_file=str(ident.metaserver_ca_file), token=ident.admin_token_file.read_text().strip())
    await cloud.run("apply", "-f", "-", stdin=MANIFEST)

    async def edge_pods() -> str | None:
        out = (await edge.run("get", "pods", check=False)).stdout
        return out if "app" in out else None

    out = await eventually(edge_pods, timeout=20, msg="the pod in the node's metaserver")
    assert out.splitlines()[0].split()[:3] == ["NAME", "READY", "STATUS"]
    got = yaml.safe_load((await edge.run("get", "pod", "app", "-o", "yaml")).stdout)
    assert got["spec"]["nodeName"] == "edge-1" and got["metadata"]["labels"] == {"app": "demo"}
    await eventually(lambda: _has(edge, "configmaps", "app-config"), timeout=20, msg="the configmap in the node's metaserver")
    assert "app" in (await edge.run("get", "pods", "-l", "app=demo", "-o", "name")).stdout
    logs = await edge.run("logs", "app", check=False)
    assert logs.stderr.strip() == "Error from server (BadRequest): log is not served by a node's metaserver: use the cloud apiserver (edgebus kubeconfig), or edgebus logs"

    # online, a write through the node is forwarded to the cloud as the node: what a node may
    # write goes through (an Event), what it may not is refused by the cloud (relabelling a pod)
    relabel = await edge.run("label", "pod", "app", "tier=edge", check=False)
    assert relabel.returncode != 0 and relabel.stderr.strip().startswith('Error from server (Forbidden): pods "app" is forbidden: User "system:node:edge-1" cannot patch resource "pods"'), relabel.stderr
    assert "tier" not in (await lab.store.get(PODS, "default", "app"))["metadata"]["labels"]
    await edge.run("create", "-f", "-", stdin=_event("via-edge"))
    assert (await lab.store.get(EVENTS, "default", "via-edge"))["reason"] == "Tested"

    # -- offline ----------------------------------------------------------------------
    assert lab.proxy is not None
    lab.proxy.cut()
    await eventually(lambda: _link_down(lab), timeout=15, msg="the link is down")
    out = (await edge.run("get", "pods")).stdout
    assert "app" in out
    assert yaml.safe_load((await edge.run("get", "pod", "app", "-o", "yaml")).stdout)["metadata"]["name"] == "app"
    assert "app-config" in (await edge.run("get", "configmaps")).stdout
    t0 = time.monotonic()
    denied = await edge.run("label", "pod", "app", "offline=yes", check=False)
    assert denied.returncode != 0 and denied.stderr.strip() == "Error from server (ServiceUnavailable): node edge-1 is offline; writes need the cloud"
    assert time.monotonic() - t0 < 10, "an offline write must fail fast, not hang"
    # kubectl's validation (OpenAPI from the node) works offline; the write itself is refused
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: offline-cm, namespace: default}\ndata: {a: b}\n"
    denied = await edge.run("apply", "-f", "-", stdin=cm, check=False)
    assert denied.returncode != 0 and "Error from server (ServiceUnavailable)" in denied.stderr and "writes need the cloud" in denied.stderr

    # kubectl get pods -w keeps working offline: a status the node reports shows up live
    watcher = subprocess.Popen(edge.argv("get", "pods", "-w", "--output-watch-events"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = await asyncio.wait_for(asyncio.to_thread(_read_until, watcher, "app"), 30)
        assert first.split()[0] == "ADDED" and "Running" not in first
        env = Envelope.new(source="edged", operation="update", resource="pods", content={"time": time.time_ns(), "status": {"phase": "Running"}})
        await lab.edge.js_publish(names.outbox_subject("edge-1", names.UP_STATUS, names.ObjectRef("pods", "default", "app")), env, stream=names.STREAM_EDGE_UP)
        line = await asyncio.wait_for(asyncio.to_thread(_read_until, watcher, "Running"), 15)
        assert line.split()[0] == "MODIFIED" and "app" in line
    finally:
        watcher.terminate()
        watcher.wait(5)

    # back online: writes go through again
    lab.proxy.heal()
    await eventually(lambda: _write_ok(edge), timeout=30, msg="writes through the node after heal")


def _read_until(proc: subprocess.Popen[str], text: str) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return line
    raise AssertionError(f"watch ended before {text!r}")


async def _edge_label(edge: Kubectl, k: str, v: str) -> bool:
    got = yaml.safe_load((await edge.run("get", "pod", "app", "-o", "yaml")).stdout)
    return (got["metadata"].get("labels") or {}).get(k) == v


async def _link_down(lab: RunningLab) -> bool:
    env = Envelope.new(source="test", operation="query", content={})
    return (await lab.edge.call(names.edgehub_subject("edge-1", "state"), env)).content["link"] == "down"


async def _write_ok(edge: Kubectl) -> bool:
    return (await edge.run("create", "-f", "-", stdin=_event(f"healed-{time.monotonic_ns()}"), check=False)).returncode == 0


def _event(name: str) -> str:
    return (
        f"apiVersion: v1\nkind: Event\nmetadata: {{name: {name}, namespace: default}}\n"
        "involvedObject: {kind: Pod, name: app, namespace: default}\nreason: Tested\nmessage: written through the node\ntype: Normal\n"
    )


async def _has(edge: Kubectl, resource: str, name: str) -> bool:
    return name in (await edge.run("get", resource, check=False)).stdout
