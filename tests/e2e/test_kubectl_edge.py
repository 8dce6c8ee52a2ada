"""The real kubectl against a node's metaserver: reads from the node's LMDB also while the
node is cut off from the cloud; writes forwarded to the cloud while online (what the cloud
accepted then read back from the node at once, what it refused nowhere), and a clear Status
error (not a hang) while offline; pod logs (a Wasm pod: no containerd needed) from the
node's own edged, also while offline."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import wasmtime
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

WAT = Path(__file__).resolve().parents[1] / "data" / "wasm" / "tool.wat"


def wasm_manifest() -> str:
    """A Wasm pod printing "tick" every 200 ms (edged runs it with wasmtime)."""
    module = base64.b64encode(bytes(wasmtime.wat2wasm(WAT.read_text()))).decode()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ticker", "namespace": "default"},
        "spec": {
            "nodeName": "edge-1",
            "runtimeClassName": "wasm",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "configmap-module", "command": ["/mod/tool.wasm", "sleep"], "volumeMounts": [{"name": "mod", "mountPath": "/mod"}]}],
            "volumes": [{"name": "mod", "configMap": {"name": "tool-module"}}],
        },
    }
    docs = [
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "wasm"}, "handler": "wasm"},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tool-module", "namespace": "default"}, "binaryData": {"tool.wasm": module}},
        pod,
    ]
    return yaml.safe_dump_all(docs)


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
    await cloud.run("apply", "-f", "-", stdin=wasm_manifest())

    async def edge_pods() -> str | None:
        out = (await edge.run("get", "pods", check=False)).stdout
        return out if "app" in out else None

    out = await eventually(edge_pods, timeout=20, msg="the pod in the node's metaserver")
    assert out.splitlines()[0].split()[:3] == ["NAME", "READY", "STATUS"]
    got = yaml.safe_load((await edge.run("get", "pod", "app", "-o", "yaml")).stdout)
    assert got["spec"]["nodeName"] == "edge-1" and got["metadata"]["labels"] == {"app": "demo"}
    await eventually(lambda: _has(edge, "configmaps", "app-config"), timeout=20, msg="the configmap in the node's metaserver")
    assert "app" in (await edge.run("get", "pods", "-l", "app=demo", "-o", "name")).stdout
    # the node's own Node object (not the others'), with what the cloud changes in it
    nodes = await eventually(lambda: _node_rows(edge), timeout=20, msg="edge-1's Node in its metaserver")
    assert [r[:2] for r in nodes] == [["edge-1", "Ready"]]
    await cloud.run("label", "node", "edge-1", "site=line-3")
    await eventually(lambda: _edge_node_label(edge, "site", "line-3"), timeout=20, msg="the cloud's label on the edge's copy of its Node")
    # pod logs through the node: from its own edged
    await eventually(lambda: _ticks(edge, 2), timeout=60, msg="kubectl logs ticker through the node's metaserver")
    missing = await edge.run("logs", "nope", check=False)
    assert missing.returncode != 0 and missing.stderr.strip() == 'error: error from server (NotFound): pods "nope" not found in namespace "default"'

    # online, a write through the node is forwarded to the cloud as the node: what a node may
    # write goes through (an Event), what it may not is refused by the cloud (relabelling a pod)
    relabel = await edge.run("label", "pod", "app", "tier=edge", check=False)
    assert relabel.returncode != 0 and relabel.stderr.strip().startswith('Error from server (Forbidden): pods "app" is forbidden: User "system:node:edge-1" cannot patch resource "pods"'), relabel.stderr
    assert "tier" not in (await lab.store.get(PODS, "default", "app"))["metadata"]["labels"]
    await edge.run("create", "-f", "-", stdin=_event("via-edge"))
    assert (await lab.store.get(EVENTS, "default", "via-edge"))["reason"] == "Tested"

    # read your writes: what the cloud accepted is on the node at once, what it refused nowhere
    denied = await edge.run("create", "configmap", "from-edge", "--from-literal=a=b", check=False)
    assert denied.returncode != 0 and denied.stderr.strip() == (
        'error: failed to create configmap: configmaps is forbidden: User "system:node:edge-1" cannot create resource "configmaps" in API group "" in the namespace "default"'
    ), denied.stderr
    assert "NotFound" in (await edge.run("get", "configmap", "from-edge", check=False)).stderr
    await cloud.run("create", "rolebinding", "edge-1-edit", "--clusterrole=edit", "--user=system:node:edge-1", "-n", "default")

    async def created() -> bool:
        return (await edge.run("create", "configmap", "from-edge", "--from-literal=a=b", check=False)).returncode == 0

    await eventually(created, timeout=20, msg="the node may create ConfigMaps (RBAC)")
    got = yaml.safe_load((await edge.run("get", "configmap", "from-edge", "-o", "yaml")).stdout)
    assert got["data"] == {"a": "b"}
    assert "from-edge" in (await edge.run("get", "configmaps", "-o", "name")).stdout
    invalid = await edge.run("create", "configmap", "Bad_Name", "--from-literal=a=b", check=False)
    assert invalid.returncode != 0 and "is invalid" in invalid.stderr, invalid.stderr
    assert "bad_name" not in (await edge.run("get", "configmaps", "-o", "name")).stdout.lower()
    await edge.run("delete", "configmap", "from-edge")
    assert "NotFound" in (await edge.run("get", "configmap", "from-edge", check=False)).stderr
    assert "NotFound" in (await cloud.run("get", "configmap", "from-edge", check=False)).stderr

    # -- offline ----------------------------------------------------------------------
    assert lab.proxy is not None
    lab.proxy.cut()
    await eventually(lambda: _link_down(lab), timeout=15, msg="the link is down")
    out = (await edge.run("get", "pods")).stdout
    assert "app" in out
    assert yaml.safe_load((await edge.run("get", "pod", "app", "-o", "yaml")).stdout)["metadata"]["name"] == "app"
    assert "app-config" in (await edge.run("get", "configmaps")).stdout
    assert await _edge_node_label(edge, "site", "line-3")  # its Node, offline too
    assert (await edge.run("get", "nodes", "-o", "name")).stdout.split() == ["node/edge-1"]
    t0 = time.monotonic()
    denied = await edge.run("label", "pod", "app", "offline=yes", check=False)
    assert denied.returncode != 0 and denied.stderr.strip() == "Error from server (ServiceUnavailable): node edge-1 is offline; writes need the cloud"
    assert time.monotonic() - t0 < 10, "an offline write must fail fast, not hang"
    # kubectl's validation (OpenAPI from the node) works offline; the write itself is refused
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: offline-cm, namespace: default}\ndata: {a: b}\n"
    denied = await edge.run("apply", "-f", "-", stdin=cm, check=False)
    assert denied.returncode != 0 and "Error from server (ServiceUnavailable)" in denied.stderr and "writes need the cloud" in denied.stderr

    # logs offline: --tail, -c, and -f (which streams until kubectl stops it)
    await eventually(lambda: _ticks(edge, 2), timeout=30, msg="kubectl logs through the node while offline")
    tail = (await edge.run("logs", "ticker", "-c", "main", "--tail", "3")).stdout.splitlines()
    assert tail == ["tick"] * 3
    follower = subprocess.Popen(edge.argv("logs", "-f", "--tail", "1", "ticker"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = await asyncio.wait_for(asyncio.to_thread(_read_lines, follower, 6), 30)
        assert lines == ["tick"] * 6  # one from the tail, the others as they are written
    finally:
        follower.terminate()
        follower.wait(5)

    # kubectl get pods -w keeps working offline: a status the node reports shows up live
    watcher = subprocess.Popen(edge.argv("get", "pods", "-w", "--output-watch-events"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = await asyncio.wait_for(asyncio.to_thread(_read_until, watcher, "", "app"), 30)
        assert first.split()[0] == "ADDED" and "Running" not in first
        env = Envelope.new(source="edged", operation="update", resource="pods", content={"time": time.time_ns(), "status": {"phase": "Running"}})
        await lab.edge.js_publish(names.outbox_subject("edge-1", names.UP_STATUS, names.ObjectRef("pods", "default", "app")), env, stream=names.STREAM_EDGE_UP)
        line = await asyncio.wait_for(asyncio.to_thread(_read_until, watcher, "Running", "app"), 15)
        assert line.split()[0] == "MODIFIED" and "app" in line
    finally:
        watcher.terminate()
        watcher.wait(5)

    # back online: writes go through again
    lab.proxy.heal()
    await eventually(lambda: _write_ok(edge), timeout=30, msg="writes through the node after heal")


def _read_lines(proc: subprocess.Popen[str], n: int) -> list[str]:
    assert proc.stdout is not None
    out: list[str] = []
    for line in proc.stdout:
        out.append(line.rstrip("\n"))
        if len(out) >= n:
            break
    return out


async def _ticks(edge: Kubectl, n: int) -> bool:
    cp = await edge.run("logs", "ticker", check=False)
    return cp.returncode == 0 and cp.stdout.count("tick") >= n


def _read_until(proc: subprocess.Popen[str], text: str, name: str | None = None) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line and (name is None or name in line.split()):
            return line
    raise AssertionError(f"watch ended before {text!r}")


async def _node_rows(edge: Kubectl) -> list[list[str]] | None:
    lines = (await edge.run("get", "nodes", check=False)).stdout.splitlines()
    rows = [ln.split() for ln in lines[1:]]
    return rows or None


async def _edge_node_label(edge: Kubectl, k: str, v: str) -> bool:
    got = yaml.safe_load((await edge.run("get", "node", "edge-1", "-o", "yaml")).stdout)
    return (got["metadata"].get("labels") or {}).get(k) == v


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
