"""The Wasm runtime with real wasmtime and a real module (``tests/data/wasm/tool.wat``,
compiled with wasmtime's own ``wat2wasm``), one real worker process per container: the
module gets its argv, environment and preopened directories, its output becomes CRI log
records, its exit code the container's; an infinite loop is stopped by the CPU limit, a
memory bomb by the memory limit, SIGTERM stops a module at once, and a worker that dies
unannounced (kill -9, reboot) counts as exited 137. Modules come from an OCI artifact
(an OCI image layout tar, built here from the image-spec layout) or from a volume."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import signal
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from edgebus.cri import CriError, api
from edgebus.testing.waiting import eventually
from edgebus.wasm.modules import NotWasm
from edgebus.wasm.runtime import WasmRuntime

WAT = Path(__file__).resolve().parents[1] / "data" / "wasm" / "tool.wat"
IMAGE = "registry.local/tool:1"


def module_bytes() -> bytes:
    return bytes(wasmtime.wat2wasm(WAT.read_text()))


def oci_archive(path: Path, name: str, wasm: bytes, layer_type: str = "application/vnd.wasm.content.layer.v1+wasm") -> None:
    """An OCI image layout (image-spec: oci-layout, index.json, blobs/sha256/<hex>) holding
    one artifact whose single layer is the module - written here from the spec."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, Any]:
        h = hashlib.sha256(data).hexdigest()
        blobs[h] = data
        return {"digest": f"sha256:{h}", "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", **blob(b'{"architecture":"wasm","os":"wasip1"}')},
        "layers": [{"mediaType": layer_type, **blob(wasm)}],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(json.dumps(manifest).encode()), "annotations": {"io.containerd.image.name": name}}],
    }
    with tarfile.open(path, "w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode(), **{f"blobs/sha256/{h}": d for h, d in blobs.items()}}
        for n, data in files.items():
            ti = tarfile.TarInfo(n)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))


@pytest.fixture
def rt(tmp_path: Path) -> WasmRuntime:
    r = WasmRuntime(tmp_path / "wasm", cpu_burst_seconds=1.0)
    oci_archive(tmp_path / "tool.tar", IMAGE, module_bytes())
    assert r.import_archive(tmp_path / "tool.tar") == [IMAGE]
    return r


def sandbox_config(tmp: Path, uid: str = "u-1") -> api.PodSandboxConfig:
    return api.PodSandboxConfig(metadata=api.PodSandboxMetadata(name="p", namespace="default", uid=uid, attempt=0), log_directory=str(tmp / "logs"), labels={"pod": uid})


def container_config(*args: str, name: str = "main", mounts: list[api.Mount] | None = None, env: dict[str, str] | None = None, cpu_millis: int = 0, memory: int = 0, command: list[str] | None = None) -> api.ContainerConfig:
    res = api.LinuxContainerResources(memory_limit_in_bytes=memory)
    if cpu_millis:
        res.cpu_period, res.cpu_quota = 100_000, cpu_millis * 100
    return api.ContainerConfig(
        metadata=api.ContainerMetadata(name=name, attempt=0),
        image=api.ImageSpec(image=IMAGE),
        command=command or [],
        args=list(args),
        envs=[api.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
        mounts=mounts or [],
        log_path=f"{name}/0.log",
        labels={"c": name},
        linux=api.LinuxContainerConfig(resources=res),
    )


async def run(rt: WasmRuntime, tmp: Path, cfg: api.ContainerConfig, timeout: float = 20) -> api.ContainerStatus:
    sbc = sandbox_config(tmp)
    sid = (await rt.list_pod_sandbox({"pod": "u-1"}) or [None])[0]
    sb_id = sid.id if sid is not None else await rt.run_pod_sandbox(sbc)
    cid = await rt.create_container(sb_id, cfg, sbc)
    await rt.start_container(cid)

    async def exited() -> api.ContainerStatus | None:
        s = await rt.container_status(cid)
        return s if s.state == api.CONTAINER_EXITED else None

    return await eventually(exited, timeout=timeout, interval=0.05, msg="the module exits")


def log_lines(path: str) -> list[tuple[str, str]]:
    out = []
    for line in Path(path).read_text().splitlines():
        ts, stream, tag, content = line.split(" ", 3)
        assert ts.endswith("Z") and tag == "F"
        out.append((stream, content))
    return out


async def test_args_env_files_stderr_and_exit_code(rt: WasmRuntime, tmp_path: Path) -> None:
    cfg_dir, out_dir = tmp_path / "cfg", tmp_path / "out"
    cfg_dir.mkdir()
    out_dir.mkdir()
    (cfg_dir / "in.txt").write_text("from the configmap")
    mounts = [api.Mount(container_path="/etc/cfg", host_path=str(cfg_dir), readonly=True), api.Mount(container_path="/data", host_path=str(out_dir))]
    st = await run(rt, tmp_path, container_config("hello", "two words", "7", mounts=mounts, env={"GREETING": "hi there", "EMPTY": ""}, command=["tool"]))
    assert (st.exit_code, st.reason) == (7, "Error")
    assert st.started_at > 0 and st.finished_at >= st.started_at and st.image_ref.startswith("sha256:")
    lines = log_lines(st.log_path)
    assert ("stdout", "arg tool") in lines and ("stdout", "arg two words") in lines and ("stdout", "arg 7") in lines
    assert ("stdout", "env GREETING=hi there") in lines and ("stdout", "env EMPTY=") in lines
    assert ("stdout", "file from the configmap") in lines and ("stdout", "wrote") in lines
    assert ("stderr", "to stderr") in lines
    assert (out_dir / "out.txt").read_text() == "written by wasm\n"
    # no mounts: nothing to read or write; no digit: exit 0
    st = await run(rt, tmp_path, container_config("hello", name="plain", command=["tool"]))
    assert (st.exit_code, st.reason) == (0, "Completed")
    assert ("stdout", "nofile") in log_lines(st.log_path) and ("stdout", "nowrite") in log_lines(st.log_path)


async def test_read_only_mount_refuses_writes(rt: WasmRuntime, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    mounts = [api.Mount(container_path="/a", host_path=str(a)), api.Mount(container_path="/b", host_path=str(b), readonly=True)]
    st = await run(rt, tmp_path, container_config("hello", mounts=mounts, command=["tool"]))
    assert ("stdout", "nowrite") in log_lines(st.log_path) and not (b / "out.txt").exists()


async def test_an_infinite_loop_is_stopped_by_the_cpu_limit(rt: WasmRuntime, tmp_path: Path) -> None:
    t0 = time.monotonic()
    st = await run(rt, tmp_path, container_config("loop", cpu_millis=10, command=["tool"]), timeout=60)
    took = time.monotonic() - t0
    print(f"\nloop stopped after {took:.2f}s")
    assert (st.exit_code, st.reason) == (137, "CPULimitExceeded") and "10m" in st.message
    assert ("stdout", "looping") in log_lines(st.log_path)


async def test_a_memory_bomb_is_stopped_by_the_memory_limit(rt: WasmRuntime, tmp_path: Path) -> None:
    st = await run(rt, tmp_path, container_config("bomb", memory=16 << 20, command=["tool"]))
    assert (st.exit_code, st.reason) == (137, "OOMKilled") and str(16 << 20) in st.message
    # without a limit wasmtime's own 4 GiB cap of a 32-bit memory ends it: a plain trap
    st = await run(rt, tmp_path, container_config("bomb", name="nolimit", command=["tool"]), timeout=60)
    assert (st.exit_code, st.reason) == (134, "Error")


async def test_stop_kill_and_restart_adoption(rt: WasmRuntime, tmp_path: Path) -> None:
    sbc = sandbox_config(tmp_path)
    sb = await rt.run_pod_sandbox(sbc)
    with pytest.raises(CriError, match="reserved"):
        await rt.run_pod_sandbox(sbc)
    cid = await rt.create_container(sb, container_config("sleep", command=["tool"]), sbc)
    assert (await rt.container_status(cid)).state == api.CONTAINER_CREATED
    await rt.start_container(cid)
    st = await rt.container_status(cid)
    assert st.state == api.CONTAINER_RUNNING

    async def ticks() -> bool:
        return Path(st.log_path).exists() and Path(st.log_path).read_text().count("tick") >= 2

    await eventually(ticks, timeout=20, msg="ticks logged")
    # another runtime object on the same directory (edged restarted) sees the same
    again = WasmRuntime(rt.root)
    assert [c.id for c in await again.list_containers({"c": "main"})] == [cid]
    assert (await again.container_status(cid)).state == api.CONTAINER_RUNNING
    t0 = time.monotonic()
    await again.stop_container(cid, 30)
    assert time.monotonic() - t0 < 5  # SIGTERM stops a module at once
    st = await again.container_status(cid)
    assert (st.state, st.exit_code, st.message) == (api.CONTAINER_EXITED, 143, "stopped (SIGTERM)")
    # a worker killed outright: exited 137
    c2 = await rt.create_container(sb, api.ContainerConfig(metadata=api.ContainerMetadata(name="k", attempt=0), image=api.ImageSpec(image=IMAGE), args=["sleep"], log_path="k/0.log"), sbc)
    await rt.start_container(c2)
    pid = await rt.container_pid(c2)
    assert pid > 0
    os.kill(pid, signal.SIGKILL)

    async def dead() -> api.ContainerStatus | None:
        s = await rt.container_status(c2)
        return s if s.state == api.CONTAINER_EXITED else None

    s2 = await eventually(dead, timeout=10, msg="killed worker seen")
    assert (s2.exit_code, s2.message) == (137, "the worker process was killed")
    # after a reboot (another boot id) the sandbox is not ready any more
    rebooted = WasmRuntime(rt.root, boot="another-boot")
    assert [b.state for b in await rebooted.list_pod_sandbox()] == [api.SANDBOX_NOTREADY]
    await rt.stop_pod_sandbox(sb)
    await rt.remove_pod_sandbox(sb)
    assert await rt.list_containers() == [] and await rt.list_pod_sandbox() == []


async def test_module_sources_and_unsupported_calls(rt: WasmRuntime, tmp_path: Path) -> None:
    # a .wasm file of a volume (a ConfigMap's binaryData key) as command[0]
    vol = tmp_path / "cm"
    vol.mkdir()
    (vol / "tool.wasm").write_bytes(module_bytes())
    st = await run(rt, tmp_path, container_config("hello", "3", name="fromvol", command=["/mod/tool.wasm"], mounts=[api.Mount(container_path="/mod", host_path=str(vol))]))
    assert st.exit_code == 3 and ("stdout", "arg /mod/tool.wasm") in log_lines(st.log_path)
    sbc = sandbox_config(tmp_path)
    sb = (await rt.list_pod_sandbox())[0].id
    missing = api.ContainerConfig(metadata=api.ContainerMetadata(name="m", attempt=0), image=api.ImageSpec(image="nope:1"), log_path="m/0.log")
    with pytest.raises(CriError, match="edgebus image load"):
        await rt.create_container(sb, missing, sbc)
    assert await rt.image_status("nope:1") is None
    img = await rt.image_status(IMAGE)
    assert img is not None and img.repo_tags == [IMAGE]
    with pytest.raises(CriError, match="not supported"):
        await rt.exec_sync("wasm-x", ["sh"], timeout=1)
    with pytest.raises(CriError, match="port-forward"):
        await rt.port_forward_url(sb, [80])
    # a container image archive is not a Wasm artifact; nor is a manifest with two layers
    oci_archive(tmp_path / "container.tar", "busybox:1", b"not wasm", layer_type="application/vnd.oci.image.layer.v1.tar")
    with pytest.raises(NotWasm):
        rt.import_archive(tmp_path / "container.tar")
    # a module that is not valid wasm: StartError (exit 128)
    (vol / "bad.wasm").write_bytes(b"\0asm garbage")
    st = await run(rt, tmp_path, container_config(name="bad", command=["/mod/bad.wasm"], mounts=[api.Mount(container_path="/mod", host_path=str(vol))]))
    assert (st.exit_code, st.reason) == (128, "StartError")
    await asyncio.sleep(0)
