"""Wasm pods through edged on a node **without containerd**, with real wasmtime, real NATS
servers and the real cloud services: the module shipped as an OCI artifact with
``edgebus image load`` (or as a ConfigMap key), args, env from ConfigMaps and Secrets,
ConfigMap/Secret/emptyDir volumes as preopened directories, logs (and ``--previous``)
through the apiserver's log route, exit codes and restarts with back-off in
containerStatuses, the CPU limit, deletion, an edged restart that adopts the running
module, and clean errors for what a Wasm container cannot do."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio

from edgebus.objects import CONFIGMAPS, EVENTS, NODES, PODS, SECRETS
from edgebus.testing.servers import Cluster, start_hub
from edgebus.testing.waiting import eventually

from .podmesh import NODE, PodMesh, start_mesh, stop_mesh
from .test_wasm_runtime import IMAGE, module_bytes, oci_archive

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class NoContainerd:
    """A node without containerd: the CRI socket does not exist."""

    address: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PodMesh]:
    root = tmp_path_factory.mktemp("wasm-mesh")
    cluster = Cluster(root, start_hub(root))
    try:
        m = await start_mesh(cluster, root, NoContainerd(f"unix://{root}/no-containerd.sock"), wait_runtime=False, wasm_cpu_burst_seconds=1.0)  # type: ignore[arg-type]
        try:
            yield m
        finally:
            await stop_mesh(m)
    finally:
        cluster.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tool_image(mesh: PodMesh, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The test module shipped to the node as an OCI artifact with ``edgebus image load``."""
    archive = tmp_path_factory.mktemp("artifact") / "tool.tar"
    oci_archive(archive, IMAGE, module_bytes())
    r = await asyncio.to_thread(cli, mesh, "image", "load", str(archive), "--node", NODE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert IMAGE in r.stdout
    return IMAGE


def wasm_pod(name: str, *args: str, restart: str = "Never", image: str = IMAGE, command: list[str] | None = None, **container: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "main", "image": image, "args": list(args), **container}
    if command is not None:
        c["command"] = command
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "runtimeClassName": "wasm", "restartPolicy": restart, "terminationGracePeriodSeconds": 5, "containers": [c]},
    }


def cli(mesh: PodMesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgebus.cli.main", "--server", mesh.api_url, "--nats", mesh.cluster.hub.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **mesh.cluster.hub.cli_env()},
    )


async def pod_log(mesh: PodMesh, name: str, **params: str) -> str:
    async with httpx.AsyncClient(base_url=mesh.api_url, timeout=20) as c:
        r = await c.get(f"/api/v1/namespaces/default/pods/{name}/log", params=params)
        assert r.status_code == 200, r.text
        return r.text


async def test_node_advertises_wasm_and_image_load_ships_a_module(mesh: PodMesh, tool_image: str) -> None:
    async def handlers() -> list[str] | None:
        n = await mesh.store.get(NODES, None, NODE)
        hs = [h["name"] for h in (n.get("status") or {}).get("runtimeHandlers") or []]
        return hs or None

    assert await eventually(handlers, timeout=20, msg="runtimeHandlers reported") == ["wasm"]
    n = await mesh.store.get(NODES, None, NODE)
    cond = next(c for c in n["status"]["conditions"] if c["type"] == "ContainerRuntimeReady")
    assert cond["status"] == "False" and "Wasm pods run (wasmtime://" in cond["message"]
    assert (mesh.edged_dir / "wasm" / "modules" / "names.json").read_text().count(tool_image) == 1


async def test_args_env_volumes_exit_code_and_logs(mesh: PodMesh, tool_image: str) -> None:
    await mesh.store.create(CONFIGMAPS, {"metadata": {"name": "w-cfg", "namespace": "default"}, "data": {"greeting": "hello from the cloud", "in.txt": "configmap file"}})
    await mesh.store.create(SECRETS, {"metadata": {"name": "w-sec", "namespace": "default"}, "stringData": {"token": "s3cr3t"}})
    p = wasm_pod(
        "w-hello",
        "hello",
        "$(GREETING)",
        "4",
        env=[
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "w-cfg", "key": "greeting"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "w-sec", "key": "token"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        volumeMounts=[{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "scratch", "mountPath": "/data"}, {"name": "sec", "mountPath": "/etc/sec"}],
        resources={"limits": {"cpu": "500m", "memory": "32Mi"}},
    )
    p["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "w-cfg"}}, {"name": "scratch", "emptyDir": {}}, {"name": "sec", "secret": {"secretName": "w-sec"}}]
    await mesh.store.create(PODS, p)
    done = await mesh.wait_phase("w-hello", "Failed", timeout=30)
    cs = done["status"]["containerStatuses"][0]
    term = cs["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (4, "Error") and cs["restartCount"] == 0
    assert cs["imageID"].startswith("sha256:") and cs["containerID"].startswith("wasm://wasm-")
    text = await pod_log(mesh, "w-hello")
    lines = text.splitlines()
    assert "arg hello from the cloud" in lines and "arg 4" in lines
    assert "env TOKEN=s3cr3t" in lines and "env POD_NAME=w-hello" in lines and "env GREETING=hello from the cloud" in lines
    assert "file configmap file" in lines and "wrote" in lines and "to stderr" in lines
    scratch = [d for d in (mesh.edged_dir / "pods").rglob("out.txt")]
    assert scratch and scratch[0].read_text() == "written by wasm\n"
    await mesh.delete_pod("w-hello")


async def test_restart_policy_backoff_previous_logs_and_module_from_a_configmap(mesh: PodMesh) -> None:
    wasm = base64.b64encode(module_bytes()).decode()
    await mesh.store.create(CONFIGMAPS, {"metadata": {"name": "w-mod", "namespace": "default"}, "binaryData": {"tool.wasm": wasm}})
    p = wasm_pod("w-crash", "hello", "1", restart="Always", image="configmap-module", command=["/mod/tool.wasm"], volumeMounts=[{"name": "mod", "mountPath": "/mod"}])
    p["spec"]["volumes"] = [{"name": "mod", "configMap": {"name": "w-mod"}}]
    await mesh.store.create(PODS, p)

    async def restarted() -> dict[str, Any] | None:
        cs = await mesh.container_status("w-crash")
        return cs if cs and cs.get("restartCount", 0) >= 2 else None

    cs = await eventually(restarted, timeout=40, msg="restarted twice")
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert "CrashLoopBackOff" in await mesh.waiting_reasons("w-crash")
    prev = await pod_log(mesh, "w-crash", previous="true")
    assert "arg /mod/tool.wasm" in prev.splitlines() and "arg 1" in prev.splitlines()
    await mesh.delete_pod("w-crash")


async def test_cpu_limit_running_status_restart_adoption_delete_and_unsupported(mesh: PodMesh, tool_image: str) -> None:
    await mesh.store.create(PODS, wasm_pod("w-loop", "loop", resources={"limits": {"cpu": "10m"}}))
    failed = await mesh.wait_phase("w-loop", "Failed", timeout=60)
    term = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "CPULimitExceeded")
    await mesh.delete_pod("w-loop")

    p = wasm_pod("w-sleep", "sleep", restart="Always", readinessProbe={"tcpSocket": {"port": 8080}})
    await mesh.store.create(PODS, p)
    running = await mesh.wait_phase("w-sleep", "Running", timeout=30)
    cs = running["status"]["containerStatuses"][0]
    assert cs["ready"] is True and "running" in cs["state"]
    started = cs["state"]["running"]["startedAt"]

    async def ticking() -> bool:
        return (await pod_log(mesh, "w-sleep")).count("tick") >= 3

    await eventually(ticking, timeout=20, msg="ticks in the log")
    # edged restarts: the module keeps running and is adopted (no restart)
    await mesh.restart_edged()
    await asyncio.sleep(2)
    cs = await mesh.container_status("w-sleep")
    assert cs is not None and cs["restartCount"] == 0 and cs["state"]["running"]["startedAt"] == started
    # the probe is not run, and an event says so
    async def unsupported() -> dict[str, Any] | None:
        evs, _ = await mesh.store.list(EVENTS, "default")
        return next((e for e in evs if e.get("reason") == "Unsupported" and (e.get("involvedObject") or {}).get("name") == "w-sleep"), None)

    ev = await eventually(unsupported, timeout=30, msg="Unsupported event")
    assert ev["type"] == "Warning" and "probes are not supported for Wasm containers" in ev["message"]
    # exec: a clear error
    r = await asyncio.to_thread(cli, mesh, "exec", "w-sleep", "--", "sh")
    assert r.returncode != 0 and "not supported in Wasm containers" in (r.stdout + r.stderr)
    # graceful delete: the module stops, the pod goes
    await mesh.store.delete(PODS, "default", "w-sleep")

    async def gone() -> bool:
        return await mesh.pod("w-sleep") is None

    await eventually(gone, timeout=30, msg="w-sleep removed")
    wasm_dir = mesh.edged_dir / "wasm" / "containers"
    assert not any(wasm_dir.iterdir())


async def test_active_deadline_fails_the_pod_and_stops_the_module(mesh: PodMesh, tool_image: str) -> None:
    p = wasm_pod("w-deadline", "sleep", restart="Always")
    p["spec"]["activeDeadlineSeconds"] = 3
    await mesh.store.create(PODS, p)
    await mesh.wait_phase("w-deadline", "Running", timeout=30)
    failed = await mesh.wait_phase("w-deadline", "Failed", timeout=30)
    st = failed["status"]
    assert (st["reason"], st["message"]) == ("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
    cs = st["containerStatuses"][0]
    assert cs["state"]["terminated"]["exitCode"] == 143 and cs["restartCount"] == 0
    await asyncio.sleep(2)  # and it stays so: no restart
    cs = await mesh.container_status("w-deadline")
    assert cs is not None and "terminated" in cs["state"] and cs["restartCount"] == 0
    await mesh.delete_pod("w-deadline")
