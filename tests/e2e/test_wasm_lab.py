"""Wasm pods on labs of real processes: a node with containerd (a process per service) and
an all-in-one node without containerd. Both through the real kubectl from the cloud (a
RuntimeClass, a ConfigMap holding the module, a pod the scheduler binds because the node
advertises the ``wasm`` handler, its logs), then offline: the module's worker killed while
the link is cut is restarted by edged, and after an offline reboot (every process of the
node stopped, the worker processes too, then the node started with the link still cut)
the pod runs again; after the heal the cloud sees the restarts."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime
import yaml

from edgebus.objects import NODES, PODS
from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab
from .kubectl import KUBECTL, Kubectl
from .test_pods import alive, cloud_status, cut

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")]

NODE = "edge-1"
WAT = Path(__file__).resolve().parents[1] / "data" / "wasm" / "tool.wat"


def manifests() -> str:
    module = base64.b64encode(bytes(wasmtime.wat2wasm(WAT.read_text()))).decode()
    docs: list[dict[str, Any]] = [
        {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "wasm"}, "handler": "wasm"},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tool-module", "namespace": "default"}, "binaryData": {"tool.wasm": module}},
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "ticker", "namespace": "default"},
            "spec": {
                "runtimeClassName": "wasm",
                "terminationGracePeriodSeconds": 2,
                "containers": [
                    {
                        "name": "main",
                        "image": "configmap-module",
                        "command": ["/mod/tool.wasm", "sleep"],
                        "volumeMounts": [{"name": "mod", "mountPath": "/mod"}],
                        "resources": {"limits": {"cpu": "100m", "memory": "8Mi"}},
                    }
                ],
                "volumes": [{"name": "mod", "configMap": {"name": "tool-module"}}],
            },
        },
    ]
    return yaml.safe_dump_all(docs)


def workers(rl: RunningLab) -> dict[str, int]:
    """Running Wasm workers of the node: container id -> pid."""
    root = Path(rl.lab.plan.data_dir) / "nodes" / NODE / "edged" / "wasm" / "containers"
    out = {}
    for d in root.iterdir() if root.exists() else []:
        try:
            started = json.loads((d / "started.json").read_text())
        except (OSError, ValueError):
            continue
        if not (d / "exit.json").exists() and alive(int(started["pid"])):
            out[d.name] = int(started["pid"])
    return out


async def running(rl: RunningLab, min_restarts: int = 0) -> bool:
    st = await cloud_status(rl, "ticker")
    cs = (st.get("containerStatuses") or [{}])[0]
    return st.get("phase") == "Running" and "running" in (cs.get("state") or {}) and cs.get("restartCount", 0) >= min_restarts


@pytest.mark.parametrize("mode", ["containerd", "all-in-one-without-containerd"])
async def test_wasm_pod_logs_offline_restart_and_offline_reboot(tmp_path: Path, mode: str) -> None:
    if mode == "containerd" and skip_reason():
        pytest.skip(skip_reason() or "")
    kw: dict[str, Any] = {"all_in_one": True, "containerd": False} if mode != "containerd" else {}
    rl = await start_lab(tmp_path, proxy=True, devices=False, **kw)
    plan = rl.lab.plan
    kc = Kubectl(tmp_path / "kubectl", "cloud", plan.apiserver_url, ca_file=plan.ca_file, token=plan.admin_token())
    try:
        kc.run("apply", "-f", "-", stdin=manifests())
        await eventually(lambda: running(rl), timeout=60, msg="ticker Running")
        pod = await rl.store.get(PODS, "default", "ticker")
        assert pod["spec"]["nodeName"] == NODE and pod["status"]["containerStatuses"][0]["containerID"].startswith("wasm://")
        handlers = {h["name"] for h in (await rl.store.get(NODES, None, NODE))["status"]["runtimeHandlers"]}
        assert handlers == ({"runc", "wasm"} if mode == "containerd" else {"wasm"})

        def ticks() -> bool:
            return kc.out("logs", "ticker", "--tail", "5").count("tick") >= 2

        await eventually(lambda: ticks(), timeout=20, msg="kubectl logs from the cloud")
        assert "runtimeclass.node.k8s.io/wasm" in kc.out("get", "runtimeclass", "-o", "name")

        # offline: the worker is killed, edged restarts the module
        await cut(rl)
        [(cid, pid)] = workers(rl).items()
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: len(workers(rl)) == 1 and cid not in workers(rl), timeout=30, msg="module restarted offline")

        # offline reboot: every process of the node stops, the workers too; the node boots offline
        pids = list(workers(rl).values())
        await rl.lab.stop_group(NODE)
        for p in pids:
            os.kill(p, signal.SIGKILL)
        await eventually(lambda: not any(alive(p) for p in pids), timeout=10, msg="workers gone")
        t0 = time.monotonic()
        await rl.lab.start_group(NODE)
        await eventually(lambda: len(workers(rl)) == 1, timeout=60, msg="module running again after the offline reboot")
        print(f"\noffline boot -> Wasm pod running: {time.monotonic() - t0:.2f}s")
        assert rl.proxy is not None and rl.proxy.mode == "cut"

        rl.proxy.heal()
        await eventually(lambda: running(rl, min_restarts=2), timeout=60, msg="restarts visible in the cloud after heal")
        await eventually(lambda: ticks(), timeout=20, msg="logs after the reboot")
        kc.run("delete", "pod", "ticker", "--wait=true", "--timeout=60s")
        assert workers(rl) == {}
    finally:
        await stop_lab(rl)
