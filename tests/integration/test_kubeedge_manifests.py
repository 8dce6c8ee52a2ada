"""KubeEdge's manifests work unchanged: every file of ``tests/data/kubeedge/`` (written with
the fields, value forms and spellings of KubeEdge's published Device and DeviceModel
manifests) is applied with the real ``kubectl`` (which validates against the API's OpenAPI
and asks for ``fieldValidation=Strict``), each object is read back, and every leaf is
compared. Nothing is fetched at test time."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edgebus.cli.kubeconfig import kubeconfig
from edgebus.natsd import free_port
from edgebus.runtime import NatsSettings
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from services.apiserver.config import ApiServerSettings, Settings
from services.apiserver.service import build

DATA = Path(__file__).resolve().parents[1] / "data" / "kubeedge"
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")

PLURAL = {"Device": "devices", "DeviceModel": "devicemodels", "DeviceStatus": "devicestatuses"}
SERVER_SET = {"uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "ownerReferences"}


def manifests(version: str) -> list[Path]:
    return sorted((DATA / version).glob("*.yaml"))


class Kubectl:
    def __init__(self, tmp: Path, server: str) -> None:
        self.config = tmp / "kubeconfig"
        self.config.write_text(yaml.safe_dump(kubeconfig(server, "edgebus")))
        self.cache = tmp / "kube-cache"

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [KUBECTL or "kubectl", "--kubeconfig", str(self.config), "--cache-dir", str(self.cache), "--request-timeout", "20s", *args]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, env=dict(os.environ))


@pytest.fixture
async def kubectl(hub: Hub, tmp_path: Path) -> AsyncIterator[Kubectl]:
    port = free_port()
    svc = build(Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port)))
    await svc.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await eventually(lambda: _ready(client), timeout=10, msg="apiserver ready")
        yield Kubectl(tmp_path, f"http://127.0.0.1:{port}")
    finally:
        await asyncio.wait_for(svc.stop(), 15)


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


def without_nulls(v: Any) -> Any:
    """What the API server stores of a manifest: null fields are pruned (not nullable)."""
    if isinstance(v, dict):
        return {k: without_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [without_nulls(x) for x in v]
    return v


def leaves(v: Any, path: str = "") -> dict[str, Any]:
    if isinstance(v, dict):
        out: dict[str, Any] = {}
        for k, x in v.items():
            out.update(leaves(x, f"{path}.{k}" if path else k))
        return out or {path: {}}
    if isinstance(v, list):
        out = {}
        for i, x in enumerate(v):
            out.update(leaves(x, f"{path}[{i}]"))
        return out or {path: []}
    return {path: v}


def compare(doc: dict[str, Any], got: dict[str, Any]) -> None:
    want = without_nulls(doc)
    want["metadata"].setdefault("namespace", "default")
    md = {k: v for k, v in got["metadata"].items() if k not in SERVER_SET}
    ann = {k: v for k, v in (md.get("annotations") or {}).items() if k != "kubectl.kubernetes.io/last-applied-configuration"}
    md.pop("annotations", None)
    if ann:
        md["annotations"] = ann
    have = {**{k: v for k, v in got.items() if k != "metadata"}, "metadata": md}
    if "status" not in want and want["kind"] != "DeviceStatus":
        have.pop("status", None)  # written by others (a DeviceStatus, the edge)
    have.get("status", {}).pop("deviceStatusMetadata", None)
    # every leaf of the manifest reads back, and nothing else appears in spec/status
    assert leaves(have) == leaves(want), f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("path", manifests("v1beta1") + manifests("v1alpha2"), ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_manifest_applies_and_reads_back(kubectl: Kubectl, path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    cp = await asyncio.to_thread(kubectl.run, "apply", "-f", str(path))
    assert cp.returncode == 0, cp.stderr
    for d in docs:
        assert f"{d['kind'].lower()}.devices.kubeedge.io/{d['metadata']['name']} {'configured' if d['kind'] == 'DeviceStatus' else 'created'}" in cp.stdout, cp.stdout
    for d in docs:
        ns = d["metadata"].get("namespace") or "default"
        got = await asyncio.to_thread(kubectl.run, "get", f"{PLURAL[d['kind']]}.{d['apiVersion'].split('/')[1]}.devices.kubeedge.io", d["metadata"]["name"], "-n", ns, "-o", "json")
        assert got.returncode == 0, got.stderr
        compare(d, json.loads(got.stdout))
    # applying again changes nothing
    again = await asyncio.to_thread(kubectl.run, "apply", "-f", str(path))
    assert again.returncode == 0 and again.stdout.count("unchanged") == len(docs), again.stdout + again.stderr


async def test_edgebus_checks_are_warnings_kubeedge_checks_are_errors(kubectl: Kubectl, tmp_path: Path) -> None:
    cp = await asyncio.to_thread(kubectl.run, "apply", "-f", str(DATA / "v1beta1" / "mqtt-device.yaml"))
    assert cp.returncode == 0
    # the device names a property its model does not have: KubeEdge accepts it, edgebus warns
    assert "Warning: spec.properties[0].name: the model humidity-model has no property humidity" in cp.stderr, cp.stderr
    camera = await asyncio.to_thread(kubectl.run, "apply", "-f", str(DATA / "v1beta1" / "camera.yaml"))
    assert "Warning: spec.properties[1].desired.value: property Port is ReadOnly" in camera.stderr, camera.stderr
    # what KubeEdge's CRD schema and webhook refuse, edgebus refuses
    bad = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "bad-device"},
        "spec": {"deviceModelRef": {"name": "humidity-model"}, "properties": [{"name": "humidity", "desired": {"value": 5}}, {"name": "humidity"}]},
    }
    cp = await asyncio.to_thread(kubectl.run, "apply", "-f", "-", stdin=json.dumps(bad))
    assert cp.returncode != 0
    assert 'spec.properties[0].desired.value in body must be of type string: "integer"' in cp.stderr, cp.stderr
    assert "property names must be unique." in cp.stderr
    bad_model = {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "DeviceModel", "metadata": {"name": "bad-model"}, "spec": {"properties": [{"name": "a", "type": "int"}]}}
    cp = await asyncio.to_thread(kubectl.run, "apply", "-f", "-", stdin=json.dumps(bad_model))
    assert cp.returncode != 0 and 'Unsupported value: "int"' in cp.stderr, cp.stderr
    typo = {**bad, "metadata": {"name": "typo"}, "spec": {"deviceModelRef": {"name": "humidity-model"}, "propertiez": []}}
    cp = await asyncio.to_thread(kubectl.run, "apply", "-f", "-", stdin=json.dumps(typo))
    assert cp.returncode != 0 and 'unknown field "spec.propertiez"' in cp.stderr, cp.stderr


async def test_versions_and_devicestatus(kubectl: Kubectl) -> None:
    res = await asyncio.to_thread(kubectl.run, "api-resources", "--api-group", "devices.kubeedge.io", "-o", "name")
    assert res.returncode == 0 and set(res.stdout.split()) >= {"devices.devices.kubeedge.io", "devicemodels.devices.kubeedge.io", "devicestatuses.devices.kubeedge.io"}, res.stdout
    versions = await asyncio.to_thread(kubectl.run, "api-versions")
    assert "devices.kubeedge.io/v1alpha2" in versions.stdout and "devices.kubeedge.io/v1beta1" in versions.stdout
    cp = await asyncio.to_thread(kubectl.run, "apply", "-f", str(DATA / "v1alpha2" / "modbus.yaml"))
    assert cp.returncode == 0, cp.stderr
    # written in v1alpha2, stored (and served) in v1beta1 too
    beta = json.loads((await asyncio.to_thread(kubectl.run, "get", "devices.v1beta1.devices.kubeedge.io", "pump-tcp", "-o", "json")).stdout)
    assert beta["spec"]["nodeName"] == "edge-7" and beta["spec"]["protocol"]["protocolName"] == "modbus"
    assert beta["spec"]["protocol"]["configData"] == {
        "slaveID": 1, "ip": "127.0.0.1", "port": 5802, "commType": "tcp-client", "reconnTimeout": 3000, "reconnRetryTimes": 5, "collectTimeout": 1000, "collectRetryTimes": 2, "collectType": "sync"
    }
    assert beta["spec"]["properties"][0]["visitors"]["configData"]["note"] == "flow meter 2"
    assert beta["spec"]["properties"][1]["desired"]["value"] == "0"
    # a change made through v1beta1 shows in v1alpha2
    patch = json.dumps({"spec": {"nodeName": "edge-8"}})
    assert (await asyncio.to_thread(kubectl.run, "patch", "devices.v1beta1.devices.kubeedge.io", "pump-tcp", "--type", "merge", "-p", patch)).returncode == 0
    alpha = json.loads((await asyncio.to_thread(kubectl.run, "get", "devices.v1alpha2.devices.kubeedge.io", "pump-tcp", "-o", "json")).stdout)
    assert alpha["spec"]["nodeSelector"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["edge-8"]
    assert alpha["spec"]["propertyVisitors"][0]["modbus"]["register"] == "InputRegister"
    # DeviceStatus is the Device's status, seen as its own object
    cp = await asyncio.to_thread(kubectl.run, "apply", "-f", str(DATA / "v1beta1" / "devicestatus.yaml"))
    assert cp.returncode == 0, cp.stderr
    dev = json.loads((await asyncio.to_thread(kubectl.run, "get", "devices.v1beta1.devices.kubeedge.io", "gauge-03", "-o", "json")).stdout)
    assert dev["status"]["state"] == "online" and dev["status"]["twins"][0]["reported"]["value"] == "42"
    listed = json.loads((await asyncio.to_thread(kubectl.run, "get", "--raw", "/apis/devices.kubeedge.io/v1beta1/namespaces/default/devicestatuses")).stdout)
    assert {i["metadata"]["name"] for i in listed["items"]} >= {"gauge-03", "pump-tcp"} and listed["kind"] == "DeviceStatusList"
    assert listed["items"][0]["apiVersion"] == "devices.kubeedge.io/v1beta1" and listed["items"][0]["kind"] == "DeviceStatus"
    gone = await asyncio.to_thread(kubectl.run, "delete", "devicestatus", "gauge-03")
    assert gone.returncode != 0 and "delete the Device gauge-03" in gone.stderr
