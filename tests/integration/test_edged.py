"""edged against a real containerd (runc), real NATS servers and the real cloud services.

One mesh per module (hub, leaf, containerd, services in-process); each test uses its own
pods and removes them. Skipped, with the reason, where a private containerd cannot run
(not root, or containerd/runc not installed); CI runs as root with containerd installed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from edgebus import names
from edgebus.cri.containerd import Containerd
from edgebus.envelope import Envelope
from edgebus.errors import Invalid
from edgebus.objects import CONFIGMAPS, NODES, PODS, SECRETS
from edgebus.testing.servers import Cluster, start_hub
from edgebus.testing.waiting import eventually

from .podmesh import NODE, PodMesh, containerd, pod, start_mesh, stop_mesh  # noqa: F401 - containerd: the fixture

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(containerd: Containerd, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PodMesh]:  # noqa: F811 - the fixture
    root = tmp_path_factory.mktemp("mesh")
    cluster = Cluster(root, start_hub(root))
    try:
        m = await start_mesh(cluster, root, containerd)
        try:
            yield m
        finally:
            await stop_mesh(m)
    finally:
        cluster.stop()


async def gone(mesh: PodMesh, name: str) -> None:
    """Force-delete a pod and wait until the runtime has nothing of it."""
    await mesh.delete_pod(name)

    async def empty() -> bool:
        boxes, cs = await mesh.runtime_pods(name)
        return not boxes and not cs

    await eventually(empty, timeout=20, msg=f"pod {name} gone from containerd")


def cli(mesh: PodMesh, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(
        [sys.executable, "-m", "edgebus.cli.main", "--server", mesh.api_url, "--nats", mesh.cluster.hub.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **mesh.cluster.hub.cli_env()},
    )
    if check and cp.returncode != 0:
        raise AssertionError(f"edgebus {' '.join(args)} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


async def acli(mesh: PodMesh, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, mesh, *args, check=check)


# -- the user story ------------------------------------------------------------------------


async def test_configmap_env_and_volume_printed_and_logs_match(mesh: PodMesh) -> None:
    await mesh.store.create(CONFIGMAPS, {"metadata": {"name": "hello-config", "namespace": "default"}, "data": {"greeting": "hello from the cloud", "app.ini": "[app]\nmode = edge\n"}})
    await mesh.store.create(SECRETS, {"metadata": {"name": "hello-secret", "namespace": "default"}, "stringData": {"token": "s3cr3t"}})
    p = pod(
        "hello",
        command=["/bin/sh", "-c", 'echo "greeting=$GREETING token=$TOKEN wd=$(pwd) name=$POD_NAME"; cat /etc/hello/app.ini; ls /data; sleep 3600'],
        workingDir="/tmp",
        env=[
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "hello-config", "key": "greeting"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hello-secret", "key": "token"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        volumeMounts=[{"name": "cfg", "mountPath": "/etc/hello"}, {"name": "scratch", "mountPath": "/data"}],
        resources={"limits": {"cpu": "500m", "memory": "64Mi"}},
    )
    p["spec"]["volumes"] = [{"name": "cfg", "configMap": {"name": "hello-config"}}, {"name": "scratch", "emptyDir": {}}]
    t0 = time.monotonic()
    await mesh.store.create(PODS, p)
    running = await mesh.wait_phase("hello", "Running", timeout=20)
    print(f"\ncreate -> Running in the cloud: {time.monotonic() - t0:.2f}s")
    st = running["status"]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    cs = st["containerStatuses"][0]
    assert cs["ready"] is True and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["imageID"].startswith("sha256:") and cs["containerID"].startswith("containerd://")
    assert st["hostIP"] == "127.0.0.1" and st["podIP"] == "127.0.0.1" and st["startTime"]

    want = ["greeting=hello from the cloud token=s3cr3t wd=/tmp name=hello", "[app]", "mode = edge"]

    async def logged() -> str | None:
        out = (await acli(mesh, "logs", "hello")).stdout
        return out if all(w in out for w in want) else None

    out = await eventually(logged, timeout=10, msg="log lines")
    assert out.splitlines()[:3] == want
    assert (await acli(mesh, "logs", "hello", "--tail", "2")).stdout.splitlines() == ["[app]", "mode = edge"]

    # the limits reached containerd through CRI
    _, cs_rt = await mesh.runtime_pods("hello")
    status = await mesh.cri.container_status(cs_rt[0].id)
    assert status.resources.linux.memory_limit_in_bytes == 64 << 20
    assert status.resources.linux.cpu_quota == 50_000 and status.resources.linux.cpu_period == 100_000

    # exec: output and exit code
    r = await acli(mesh, "exec", "hello", "--", "/bin/sh", "-c", "cat /etc/hello/app.ini; echo oops >&2; exit 3", check=False)
    assert r.returncode == 3 and "mode = edge" in r.stdout and "oops" in r.stderr

    # a ConfigMap change reaches the mounted file without a restart
    cm = await mesh.store.get(CONFIGMAPS, "default", "hello-config")
    cm["data"]["app.ini"] = "[app]\nmode = changed\n"
    await mesh.store.update(CONFIGMAPS, cm)

    async def updated() -> bool:
        r = await acli(mesh, "exec", "hello", "--", "cat", "/etc/hello/app.ini", check=False)
        return "mode = changed" in r.stdout

    await eventually(updated, timeout=15, msg="configmap volume updated")
    assert (await mesh.container_status("hello"))["restartCount"] == 0  # type: ignore[index]

    # kubectl's route: GET .../pods/hello/log through the apiserver
    import httpx

    async with httpx.AsyncClient(base_url=mesh.api_url) as c:
        r2 = await c.get("/api/v1/namespaces/default/pods/hello/log", params={"tailLines": "2"})
        assert r2.status_code == 200 and r2.text.splitlines() == ["[app]", "mode = edge"]
        r3 = await c.get("/api/v1/namespaces/default/pods/nope/log")
        assert r3.status_code == 404 and r3.json()["kind"] == "Status"
    await gone(mesh, "hello")


async def test_follow_streams_new_lines(mesh: PodMesh) -> None:
    await mesh.store.create(PODS, pod("ticker", command=["/bin/sh", "-c", "for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.4; done"], restart="Never"))
    await mesh.wait_phase("ticker", "Running", timeout=20)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgebus.cli.main", "--server", mesh.api_url, "--nats", mesh.cluster.hub.url, "logs", "ticker", "-f",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **mesh.cluster.hub.cli_env()},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    assert out.decode().splitlines() == [f"tick-{i}" for i in range(1, 7)], "follow: every line once, in order, ends when the container stops"
    await mesh.wait_phase("ticker", "Succeeded", timeout=10)
    await gone(mesh, "ticker")


# -- restart policies and probes -------------------------------------------------------------


async def test_on_failure_restarts_with_growing_backoff(mesh: PodMesh) -> None:
    await mesh.store.create(PODS, pod("crasher", command=["/bin/sh", "-c", "echo started; exit 1"], restart="OnFailure"))
    starts: list[float] = []
    seen: set[str] = set()

    async def restarted(n: int) -> bool:
        _, cs = await mesh.runtime_pods("crasher")
        for c in cs:
            if c.id not in seen:
                seen.add(c.id)
                starts.append(c.created_at / 1e9)
        st = await mesh.container_status("crasher")
        return bool(st) and st["restartCount"] >= n

    await eventually(lambda: restarted(3), timeout=30, interval=0.1, msg="3 restarts")
    st = await mesh.container_status("crasher")
    assert st is not None
    assert st["lastState"]["terminated"]["exitCode"] == 1
    starts.sort()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    # restart 1 at once, then 1 s, 2 s (back-off doubling from backoff_initial = 1 s)
    assert len(gaps) >= 3, gaps
    assert gaps[1] >= 0.9 and gaps[2] >= 1.8 and gaps[2] > gaps[1] > gaps[0], f"back-off must grow: {gaps}"
    assert await mesh.phase("crasher") == "Running"  # OnFailure + failing = restarting, not Failed

    async def crashloop() -> bool:
        s = await mesh.container_status("crasher")
        return bool(s) and (s.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"

    await eventually(crashloop, timeout=15, msg="CrashLoopBackOff shown while backing off")
    await gone(mesh, "crasher")


async def test_never_ends_failed_with_exit_code(mesh: PodMesh) -> None:
    await mesh.store.create(PODS, pod("once", command=["/bin/sh", "-c", "echo bye; exit 7"], restart="Never"))
    p = await mesh.wait_phase("once", "Failed", timeout=20)
    cs = p["status"]["containerStatuses"][0]
    assert cs["state"]["terminated"]["exitCode"] == 7 and cs["state"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 0
    assert {c["type"]: c["status"] for c in p["status"]["conditions"]}["Ready"] == "False"
    await asyncio.sleep(2)  # never restarted
    _, cs_rt = await mesh.runtime_pods("once")
    assert len(cs_rt) == 1
    await gone(mesh, "once")


async def test_liveness_failure_restarts_container(mesh: PodMesh) -> None:
    p = pod(
        "sick",
        command=["/bin/sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600"],
        livenessProbe={"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2},
        readinessProbe={"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1},
    )
    await mesh.store.create(PODS, p)

    async def ready() -> bool:
        s = await mesh.container_status("sick")
        return bool(s) and s["ready"] is True

    await eventually(ready, timeout=20, msg="ready via the readiness probe")

    async def restarted() -> dict[str, Any] | None:
        s = await mesh.container_status("sick")
        return s if s and s["restartCount"] >= 1 else None

    s = await eventually(restarted, timeout=20, msg="restarted after the liveness probe failed")
    assert s["lastState"]["terminated"]["exitCode"] in (137, 143)
    await gone(mesh, "sick")


# -- deletion ---------------------------------------------------------------------------------


async def test_graceful_delete_waits_for_the_edge(mesh: PodMesh) -> None:
    # PID 1 handles SIGTERM: it logs and exits 0 after a moment, within the grace period
    script = "trap 'echo got-term; sleep 1; exit 0' TERM; echo up; while :; do sleep 0.2; done"
    await mesh.store.create(PODS, pod("graceful", command=["/bin/sh", "-c", script], grace=10))
    await mesh.wait_phase("graceful", "Running")
    pod_dirs = list((mesh.edged_dir / "pods").glob("default_graceful_*"))
    assert len(pod_dirs) == 1
    t0 = time.monotonic()
    deleted = await mesh.store.delete(PODS, "default", "graceful")
    assert deleted["metadata"]["deletionTimestamp"] and deleted["metadata"]["deletionGracePeriodSeconds"] == 10
    # still there, Terminating, until the edge confirms
    p = await mesh.pod("graceful")
    assert p is not None and p["metadata"]["deletionTimestamp"]

    async def removed() -> bool:
        return await mesh.pod("graceful") is None

    await eventually(removed, timeout=20, msg="pod removed after the edge confirmed")
    took = time.monotonic() - t0
    assert took >= 0.8, f"SIGTERM handler's 1 s must have run before removal ({took:.2f}s)"
    boxes, cs = await mesh.runtime_pods("graceful")
    assert boxes == [] and cs == [], "nothing left in containerd"
    assert not pod_dirs[0].exists(), "per-pod directory removed"


async def test_sigkill_after_grace_period(mesh: PodMesh) -> None:
    # sh as PID 1 ignores SIGTERM: containerd must SIGKILL it after 2 s
    await mesh.store.create(PODS, pod("stubborn", command=["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"], grace=2))
    await mesh.wait_phase("stubborn", "Running")
    t0 = time.monotonic()
    await mesh.store.delete(PODS, "default", "stubborn")

    async def removed() -> bool:
        return await mesh.pod("stubborn") is None

    await eventually(removed, timeout=20, msg="stubborn pod removed")
    assert time.monotonic() - t0 >= 1.8
    boxes, cs = await mesh.runtime_pods("stubborn")
    assert boxes == [] and cs == []


async def test_unbound_pod_and_force_delete_are_immediate(mesh: PodMesh) -> None:
    unbound = pod("floating")
    del unbound["spec"]["nodeName"]
    await mesh.store.create(PODS, unbound)
    await mesh.store.delete(PODS, "default", "floating")
    assert await mesh.pod("floating") is None
    await mesh.store.create(PODS, pod("forced", command=["sleep", "3600"], grace=30))
    await mesh.wait_phase("forced", "Running")
    await mesh.store.delete(PODS, "default", "forced", grace_period_seconds=0)
    assert await mesh.pod("forced") is None

    async def empty() -> bool:
        boxes, cs = await mesh.runtime_pods("forced")
        return not boxes and not cs

    await eventually(empty, timeout=45, msg="force-deleted pod's containers removed by the edge")


# -- images, bad input, runtime facts --------------------------------------------------------


async def test_missing_image_reports_pull_errors_and_keeps_running_others(mesh: PodMesh) -> None:
    await mesh.store.create(PODS, pod("ghost", image="registry.invalid/none/ghost:1.0"))
    await mesh.store.create(PODS, pod("never", image="docker.io/library/nothere:1", pull="Never"))

    async def pull_backoff() -> bool:
        r = await mesh.waiting_reasons("ghost")
        return r[:3] == ["ErrImagePull", "ImagePullBackOff", "ErrImagePull"]

    await eventually(pull_backoff, timeout=20, interval=0.2, msg="ErrImagePull, ImagePullBackOff, then a new pull")
    s = await eventually(lambda: mesh.container_status("never"), timeout=10)
    await eventually(lambda: _reason(mesh, "never", "ErrImageNeverPull"), timeout=10, msg="ErrImageNeverPull")
    assert await mesh.phase("ghost") == "Pending"
    # a bad quantity never reaches the node: the API refuses it
    bad = pod("badqty", command=["sleep", "3600"], resources={"limits": {"memory": "lots"}})
    with pytest.raises(Invalid, match="quantities must match"):
        await mesh.store.create(PODS, bad)
    # and a good pod still runs
    await mesh.store.create(PODS, pod("fine", command=["sleep", "3600"]))
    await mesh.wait_phase("fine", "Running")
    for n in ("ghost", "never", "fine"):
        await gone(mesh, n)
    _ = s


async def test_missing_configmap_waits_then_starts(mesh: PodMesh) -> None:
    p = pod("needs-cm", command=["/bin/sh", "-c", "echo $V; sleep 3600"], env=[{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "late-cm", "key": "v"}}}])
    await mesh.store.create(PODS, p)
    await eventually(lambda: _reason(mesh, "needs-cm", "CreateContainerConfigError"), timeout=15, msg="waiting for the ConfigMap")
    await mesh.store.create(CONFIGMAPS, {"metadata": {"name": "late-cm", "namespace": "default"}, "data": {"v": "arrived"}})
    await mesh.wait_phase("needs-cm", "Running", timeout=20)
    await gone(mesh, "needs-cm")


async def test_node_reports_runtime_facts(mesh: PodMesh) -> None:
    n = await mesh.store.get(NODES, None, NODE)
    info = n["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.")
    assert info["kernelVersion"] and info["osImage"]
    assert n["status"]["capacity"]["pods"] == "110" and n["status"]["addresses"]
    conds = {c["type"]: c for c in n["status"]["conditions"]}
    assert conds["ContainerRuntimeReady"]["status"] == "True" and conds["Ready"]["status"] == "True"


async def test_edged_restart_adopts_running_pods(mesh: PodMesh) -> None:
    for i in range(3):
        await mesh.store.create(PODS, pod(f"keep-{i}", command=["sleep", "3600"]))
    for i in range(3):
        await mesh.wait_phase(f"keep-{i}", "Running")
    _, before = await mesh.runtime_pods()
    ids = {c.id for c in before if c.labels.get("io.kubernetes.pod.name", "").startswith("keep-")}
    await mesh.restart_edged()
    await asyncio.sleep(2.5)
    boxes, after = await mesh.runtime_pods()
    assert {c.id for c in after if c.labels.get("io.kubernetes.pod.name", "").startswith("keep-")} == ids, "same containers: adopted, not recreated"
    assert len([b for b in boxes if b.labels.get("io.kubernetes.pod.name", "").startswith("keep-")]) == 3
    for i in range(3):
        await gone(mesh, f"keep-{i}")


async def test_image_load_over_the_bus(mesh: PodMesh, tmp_path: Path) -> None:
    from edgebus.images import ImageSpec, build_layer, fetch_busybox, oci_archive

    archive = tmp_path / "loaded.tar"
    archive.write_bytes(oci_archive(ImageSpec("example.com/edge/loaded:1", cmd=["/bin/sh", "-c", "echo from-loaded-image; sleep 3600"]), build_layer(fetch_busybox().read_bytes())))
    assert await mesh.cri.image_status("example.com/edge/loaded:1") is None
    r = await acli(mesh, "image", "load", str(archive), "--node", NODE)
    assert "example.com/edge/loaded:1" in r.stdout
    assert await mesh.cri.image_status("example.com/edge/loaded:1") is not None
    await mesh.store.create(PODS, pod("from-loaded", image="example.com/edge/loaded:1", pull="Never", command=None))
    await mesh.wait_phase("from-loaded", "Running")
    await eventually(lambda: _logged(mesh, "from-loaded", "from-loaded-image"), timeout=10, msg="the loaded image's command ran")
    # a node that does not answer: a clear error, nothing shipped in vain
    bad = await acli(mesh, "image", "load", str(archive), "--node", "edge-9", check=False)
    assert bad.returncode == 1 and "edge-9" in bad.stdout and "unreachable" in bad.stdout
    await gone(mesh, "from-loaded")


async def test_image_load_enforces_the_node_limit(mesh: PodMesh, tmp_path: Path) -> None:
    """The node's own limit decides, never the size the caller announces; and the bytes are
    counted as they arrive, whatever the stored metadata says."""
    import os

    from edgebus.bus import ObjectBucket, ObjectTooLarge, RemoteError

    big = tmp_path / "big.tar"
    big.write_bytes(os.urandom(3 << 20))
    bucket = ObjectBucket(mesh.cloud, names.BUCKET_IMAGES)
    await bucket.ensure()
    await bucket.put_file("big-archive", big)
    mesh.edged_settings["max_image_bytes"] = 2 << 20
    try:
        await mesh.restart_edged()
        env = Envelope.new(source="test", operation="request", content={"object": "big-archive", "size": 10})

        async def refused() -> RemoteError | None:
            try:
                await mesh.cloud.call(names.edged_subject(NODE, "images.load"), env, timeout=30)
            except RemoteError as exc:
                return exc if exc.code == 400 else None
            raise AssertionError("a 3 MiB archive was accepted by a node with a 2 MiB limit")

        exc = await eventually(refused, timeout=20, msg="images.load answers")
        assert str(exc) == "image archive big-archive is 3145728 bytes: this node accepts at most 2097152 bytes (edged.max_image_bytes); nothing was imported"
        with pytest.raises(ObjectTooLarge):
            await bucket.get_file("big-archive", tmp_path / "out.tar", max_bytes=1 << 20)
        assert (tmp_path / "out.tar").stat().st_size <= 1 << 20, "the read stopped at the limit"
    finally:
        mesh.edged_settings.pop("max_image_bytes", None)
        await mesh.restart_edged()
        await bucket.delete("big-archive")


async def test_host_path_to_the_node_data_dir_is_refused(mesh: PodMesh, tmp_path: Path) -> None:
    """edged refuses a hostPath in or around the node's data directory (its credentials):
    a clear container status, nothing created there."""
    node_dir = mesh.edged_dir.resolve().parent
    for name, path in (("into", str(node_dir / "creds")), ("around", "/")):
        p = pod(f"hp-{name}", command=["sleep", "3600"])
        p["spec"]["volumes"] = [{"name": "host", "hostPath": {"path": path, "type": "DirectoryOrCreate"}}]
        p["spec"]["containers"][0]["volumeMounts"] = [{"name": "host", "mountPath": "/host"}]
        await mesh.store.create(PODS, p)
        s = await eventually(lambda n=name: _waiting(mesh, f"hp-{n}", "CreateContainerConfigError"), timeout=20, msg="refused")
        assert "the node's data directory" in s["message"] and "refused on this node" in s["message"], s
    assert not (node_dir / "creds").exists(), "nothing was created inside the node's data directory"
    for name in ("into", "around"):
        await gone(mesh, f"hp-{name}")


async def _waiting(mesh: PodMesh, name: str, reason: str) -> dict[str, Any] | None:
    s = await mesh.container_status(name)
    w = ((s or {}).get("state") or {}).get("waiting") or {}
    return w if w.get("reason") == reason else None


async def _logged(mesh: PodMesh, name: str, text: str) -> bool:
    return text in (await acli(mesh, "logs", name)).stdout


async def _reason(mesh: PodMesh, name: str, reason: str) -> bool:
    s = await mesh.container_status(name)
    return ((s or {}).get("state") or {}).get("waiting", {}).get("reason") == reason


__all__ = ["Path"]


async def test_runtime_unavailable_is_a_node_condition_not_a_crash(mesh: PodMesh) -> None:
    """Last in the module: runs edged against a socket where no containerd listens."""

    async def runtime_condition() -> dict[str, Any]:
        n = await mesh.store.get(NODES, None, NODE)
        return next(c for c in n["status"]["conditions"] if c["type"] == "ContainerRuntimeReady")

    mesh.edged_settings["containerd"] = f"unix://{mesh.tmp}/no-containerd.sock"
    try:
        await mesh.restart_edged()

        async def down() -> dict[str, Any] | None:
            c = await runtime_condition()
            return c if c["status"] == "False" else None

        c = await eventually(down, timeout=20, msg="ContainerRuntimeReady=False")
        assert c["reason"] == "ContainerRuntimeUnavailable" and "no-containerd.sock" in c["message"]
        n = await mesh.store.get(NODES, None, NODE)
        assert n["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://"), "the last known version is kept"
        await mesh.store.create(PODS, pod("waits", command=["sleep", "3600"]))
        await asyncio.sleep(2)
        svc = mesh.services["edged"]
        assert svc.health()["ok"] and svc.ready()["ok"], "edged stays healthy and ready without its runtime"
        assert await mesh.phase("waits") is None
    finally:
        mesh.edged_settings.pop("containerd", None)
        await mesh.restart_edged()
    await mesh.wait_phase("waits", "Running", timeout=30)
    assert (await runtime_condition())["status"] == "True"
    await gone(mesh, "waits")


# -- init containers ------------------------------------------------------------------------


async def test_init_containers_run_in_order_before_the_app(mesh: PodMesh) -> None:
    p = pod("initorder", command=["/bin/sh", "-c", "cat /work/order; sleep 3600"], volumeMounts=[{"name": "work", "mountPath": "/work"}])
    mount = [{"name": "work", "mountPath": "/work"}]
    p["spec"]["volumes"] = [{"name": "work", "emptyDir": {}}]
    p["spec"]["initContainers"] = [
        # the first is slow: were they started together, "two" would be written first
        {"name": "first", "image": p["spec"]["containers"][0]["image"], "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-c", "sleep 2; echo one >> /work/order"], "volumeMounts": mount},
        {"name": "second", "image": p["spec"]["containers"][0]["image"], "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-c", "echo two >> /work/order"], "volumeMounts": mount},
    ]
    await mesh.store.create(PODS, p)

    async def initializing() -> dict[str, Any] | None:
        q = await mesh.pod("initorder")
        st = (q or {}).get("status") or {}
        return st if st.get("initContainerStatuses") and st.get("phase") == "Pending" else None

    st = await eventually(initializing, timeout=20, msg="Pending while the init containers run")
    assert {c["type"]: c["status"] for c in st["conditions"]}["Initialized"] == "False"
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    running = await mesh.wait_phase("initorder", "Running", timeout=30)
    inits = running["status"]["initContainerStatuses"]
    assert [(s["name"], s["state"]["terminated"]["exitCode"], s["ready"]) for s in inits] == [("first", 0, True), ("second", 0, True)]
    assert inits[0]["state"]["terminated"]["finishedAt"] <= inits[1]["state"]["terminated"]["startedAt"]
    assert {c["type"]: c["status"] for c in running["status"]["conditions"]}["Initialized"] == "True"

    async def logged() -> str | None:
        out = (await acli(mesh, "logs", "initorder")).stdout
        return out if "two" in out else None

    assert (await eventually(logged, timeout=10, msg="app container log")).split() == ["one", "two"]
    await gone(mesh, "initorder")


async def test_failed_init_container_fails_the_pod_under_never(mesh: PodMesh) -> None:
    p = pod("initfail", command=["sleep", "3600"], restart="Never")
    p["spec"]["initContainers"] = [{"name": "setup", "image": p["spec"]["containers"][0]["image"], "imagePullPolicy": "IfNotPresent", "command": ["/bin/sh", "-c", "exit 3"]}]
    await mesh.store.create(PODS, p)
    failed = await mesh.wait_phase("initfail", "Failed", timeout=30)
    init = failed["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["exitCode"] == 3
    _, cs_rt = await mesh.runtime_pods("initfail")
    assert [c.metadata.name for c in cs_rt] == ["setup"]  # the app container never ran
    await gone(mesh, "initfail")
