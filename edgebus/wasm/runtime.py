"""The Wasm runtime edged drives beside containerd, shaped as the CRI client: the same
calls (``run_pod_sandbox``, ``create_container``, ``start_container``, ``stop_container``,
``list_containers``, ``container_status`` ...) answered with the same CRI messages, so
edged's pod workers, runtime view, logs and housekeeping work unchanged on either.

* a **sandbox** is a record (``sandboxes/<id>.json``): no namespaces to set up, the pod
  shares the node's network (WASI preview 1 has no sockets); it is not ready after a
  reboot (the boot id changed), as a containerd sandbox;
* a **container** is a directory (``containers/<id>/``): ``config.json`` (what the worker
  runs), ``record.json`` (its CRI identity), ``started.json`` (worker pid, its start time)
  and ``exit.json`` (written by the worker when the module ends);
* ``start_container`` starts one worker process (:mod:`edgebus.wasm.worker`) in a
  session of its own, so it outlives edged (stopping edged is not stopping pods) and
  ``kill -9`` of edged adopts it; a worker found dead without ``exit.json`` (killed, or
  the node rebooted) has exited 137;
* ``stop_container`` sends SIGTERM to the worker (the module stops at once: it cannot
  observe signals), then SIGKILL after the grace period.

IDs start with ``wasm-`` (containerd's are hex), which is how the runtime multiplexer in
edged tells whose an ID is. Exec, attach and port-forward are refused with a clear error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgebus.cri import CriError, CriNotFound, api
from edgebus.proc import kill_matching
from edgebus.wasm.modules import ModuleStore, normalize

PREFIX = "wasm-"
HANDLER = "wasm"
#: the exit code of a worker that died without writing its exit (SIGKILL, reboot)
KILLED = 137


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (field 22 of its stat), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[-1].split()
    if not rest or rest[0] in ("Z", "X"):
        return None
    return rest[19] if len(rest) > 19 else None


def kill_workers(under: str | Path) -> int:
    """SIGKILL the Wasm workers whose container directory is under ``under`` (a node's data,
    when the node is taken down for good): like containerd's shims they outlive edged by
    design, so nothing else would stop them."""
    root = os.fsencode(str(Path(under).resolve())) + b"/"
    return kill_matching(lambda argv: len(argv) >= 4 and argv[1:3] == [b"-m", b"edgebus.wasm.worker"] and argv[3].startswith(root))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _matches(labels: dict[str, str], want: dict[str, str] | None) -> bool:
    return all(labels.get(k) == v for k, v in (want or {}).items())


class Unsupported(CriError):
    """What a Wasm container cannot do (exec, attach, port-forward)."""


class WasmRuntime:
    """Sandboxes and containers of Wasm pods under ``root``; modules from ``modules``."""

    def __init__(self, root: str | Path, *, cpu_burst_seconds: float = 10.0, boot: str | None = None, python: str = sys.executable) -> None:
        self.root = Path(root)
        self.modules = ModuleStore(self.root / "modules")
        self.cpu_burst_seconds = cpu_burst_seconds
        self.boot = boot if boot is not None else boot_id()
        self.python = python
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        #: container records never change once written: read each once
        self._records: dict[str, dict[str, Any]] = {}
        #: an exit never changes either
        self._exits: dict[str, dict[str, Any]] = {}
        (self.root / "sandboxes").mkdir(parents=True, exist_ok=True)
        (self.root / "containers").mkdir(parents=True, exist_ok=True)

    @staticmethod
    def owns(obj_id: str) -> bool:
        return obj_id.startswith(PREFIX)

    async def close(self) -> None:
        return None

    async def version(self, timeout: float | None = None) -> api.VersionResponse:
        import importlib.metadata

        try:
            v = importlib.metadata.version("wasmtime")
        except importlib.metadata.PackageNotFoundError as exc:
            raise CriError("wasmtime is not installed") from exc
        return api.VersionResponse(version="0.1.0", runtime_name="wasmtime", runtime_version=v, runtime_api_version="v1")

    # -- sandboxes -------------------------------------------------------------------------
    def _sb_path(self, sid: str) -> Path:
        return self.root / "sandboxes" / f"{sid}.json"

    def _sandbox(self, sid: str) -> dict[str, Any]:
        rec = _read(self._sb_path(sid)) if self.owns(sid) else None
        if rec is None:
            raise CriNotFound(f"sandbox {sid} not found")
        return rec

    async def run_pod_sandbox(self, config: api.PodSandboxConfig, *, timeout: float | None = None) -> str:
        md = config.metadata
        for rec in self._sandboxes():
            m = rec["metadata"]
            if (m["namespace"], m["name"], m["uid"], m["attempt"]) == (md.namespace, md.name, md.uid, md.attempt):
                raise CriError(f'the sandbox name "{md.name}_{md.namespace}_{md.uid}_{md.attempt}" is already reserved for {rec["id"]}')
        sid = PREFIX + secrets.token_hex(16)
        rec = {
            "id": sid,
            "metadata": {"name": md.name, "namespace": md.namespace, "uid": md.uid, "attempt": int(md.attempt)},
            "labels": dict(config.labels),
            "annotations": dict(config.annotations),
            "log_directory": config.log_directory,
            "created_at": time.time_ns(),
            "boot": self.boot,
            "stopped": False,
        }
        _write(self._sb_path(sid), rec)
        return sid

    def _sandboxes(self) -> list[dict[str, Any]]:
        out = []
        for p in (self.root / "sandboxes").glob("*.json"):
            rec = _read(p)
            if rec is not None:
                out.append(rec)
        return out

    def _sb_state(self, rec: dict[str, Any]) -> api.PodSandboxState.ValueType:
        return api.SANDBOX_NOTREADY if rec.get("stopped") or rec.get("boot") != self.boot else api.SANDBOX_READY

    def _sb_msg(self, rec: dict[str, Any]) -> api.PodSandbox:
        m = rec["metadata"]
        return api.PodSandbox(
            id=rec["id"],
            metadata=api.PodSandboxMetadata(name=m["name"], namespace=m["namespace"], uid=m["uid"], attempt=m["attempt"]),
            state=self._sb_state(rec),
            created_at=int(rec["created_at"]),
            labels=rec["labels"],
            annotations=rec["annotations"],
            runtime_handler=HANDLER,
        )

    async def list_pod_sandbox(self, labels: dict[str, str] | None = None) -> list[api.PodSandbox]:
        return [self._sb_msg(r) for r in self._sandboxes() if _matches(r["labels"], labels)]

    async def pod_sandbox_status(self, sandbox_id: str) -> api.PodSandboxStatus:
        rec = self._sandbox(sandbox_id)
        s = self._sb_msg(rec)
        return api.PodSandboxStatus(id=s.id, metadata=s.metadata, state=s.state, created_at=s.created_at, labels=s.labels, annotations=s.annotations, runtime_handler=HANDLER)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        rec = self._sandbox(sandbox_id)
        for c in self._containers(sandbox_id=sandbox_id):
            if self._state(c)[0] == api.CONTAINER_RUNNING:
                await self.stop_container(c["id"], 0)
        rec["stopped"] = True
        _write(self._sb_path(sandbox_id), rec)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        if not self._sb_path(sandbox_id).exists():
            raise CriNotFound(f"sandbox {sandbox_id} not found")
        for c in self._containers(sandbox_id=sandbox_id):
            await self.remove_container(c["id"])
        self._sb_path(sandbox_id).unlink(missing_ok=True)

    # -- containers ------------------------------------------------------------------------
    def _cdir(self, cid: str) -> Path:
        if not self.owns(cid) or "/" in cid:
            raise CriNotFound(f"container {cid} not found")
        return self.root / "containers" / cid

    def _container(self, cid: str) -> dict[str, Any]:
        rec = self._records.get(cid)
        if rec is not None and self._cdir(cid).is_dir():
            return rec
        rec = _read(self._cdir(cid) / "record.json")
        if rec is None:
            raise CriNotFound(f"container {cid} not found")
        self._records[cid] = rec
        return rec

    def _containers(self, sandbox_id: str = "") -> list[dict[str, Any]]:
        out = []
        live = set(os.listdir(self.root / "containers"))
        for cid in live:
            rec = self._records.get(cid)
            if rec is None:
                rec = _read(self.root / "containers" / cid / "record.json")
                if rec is None:
                    continue
                self._records[cid] = rec
            if not sandbox_id or rec["sandbox_id"] == sandbox_id:
                out.append(rec)
        for cid in set(self._records) - live:
            self._records.pop(cid, None)
            self._exits.pop(cid, None)
        return out

    def resolve_module(self, config: api.ContainerConfig) -> tuple[Path, str, str]:
        """(module file, digest or "", where it came from): ``command[0]`` naming a ``.wasm``
        file inside one of the container's mounts (a ConfigMap key, a hostPath ...), else
        the module of the container's image."""
        cmd = list(config.command)
        if cmd and cmd[0].endswith(".wasm"):
            for m in sorted(config.mounts, key=lambda m: -len(m.container_path)):
                base = m.container_path.rstrip("/") + "/"
                if cmd[0].startswith(base):
                    p = Path(m.host_path) / cmd[0][len(base) :]
                    if p.is_file():
                        return p, "", f"file {cmd[0]} of a volume"
                    raise CriError(f"the module {cmd[0]} is not in its volume")
        found = self.modules.lookup(config.image.image)
        if found is None:
            raise CriError(f'no Wasm module for image "{config.image.image}": load its OCI artifact with `edgebus image load`, or name a .wasm file of a volume as command[0]')
        return found[0], found[1], f"image {normalize(config.image.image)}"

    async def create_container(self, sandbox_id: str, config: api.ContainerConfig, sandbox_config: api.PodSandboxConfig) -> str:
        sb = self._sandbox(sandbox_id)
        md = config.metadata
        for c in self._containers(sandbox_id):
            if (c["metadata"]["name"], c["metadata"]["attempt"]) == (md.name, md.attempt):
                raise CriError(f'the container name "{md.name}_{md.attempt}" is already reserved for {c["id"]}')
        module, digest, source = self.resolve_module(config)
        if not digest:  # a module of a volume: its digest keys the compiled cache too
            digest = hashlib.sha256(module.read_bytes()).hexdigest()
        cmd, args = list(config.command), list(config.args)
        argv = (cmd or [config.image.image.rsplit("/", 1)[-1].split(":")[0] + ".wasm"]) + args
        env = [[kv.key, kv.value] for kv in config.envs]
        if config.working_dir:
            env.append(["PWD", config.working_dir])
        preopens = []
        for m in config.mounts:
            if Path(m.host_path).is_dir():
                preopens.append([m.host_path, m.container_path, bool(m.readonly)])
        res = config.linux.resources
        cpu_millis = res.cpu_quota * 1000 // res.cpu_period if res.cpu_quota > 0 and res.cpu_period > 0 else 0
        cid = PREFIX + secrets.token_hex(16)
        d = self._cdir(cid)
        d.mkdir(parents=True)
        log_path = str(Path(sb["log_directory"]) / config.log_path) if sb["log_directory"] else str(d / "container.log")
        _write(
            d / "config.json",
            {
                "module": str(module),
                "digest": digest,
                "argv": argv,
                "env": env,
                "preopens": preopens,
                "memory_limit": int(res.memory_limit_in_bytes) or -1,
                "cpu_limit_millis": int(cpu_millis),
                "cpu_burst_seconds": self.cpu_burst_seconds,
                "log_path": log_path,
            },
        )
        rec = {
            "id": cid,
            "sandbox_id": sandbox_id,
            "metadata": {"name": md.name, "attempt": int(md.attempt)},
            "image": config.image.image,
            "image_ref": f"sha256:{digest}" if digest else source,
            "labels": dict(config.labels),
            "annotations": dict(config.annotations),
            "log_path": log_path,
            "created_at": time.time_ns(),
            "mounts": [[m.container_path, m.host_path, bool(m.readonly)] for m in config.mounts],
        }
        _write(d / "record.json", rec)
        return cid

    async def start_container(self, container_id: str) -> None:
        rec = self._container(container_id)
        d = self._cdir(container_id)
        if (d / "started.json").exists():
            raise CriError(f"container {container_id} was started already")
        Path(json.loads((d / "config.json").read_text())["log_path"]).parent.mkdir(parents=True, exist_ok=True)
        with open(d / "worker.log", "ab") as wl:
            proc = subprocess.Popen(
                [self.python, "-m", "edgebus.wasm.worker", str(d)],
                stdin=subprocess.DEVNULL,
                stdout=wl,
                stderr=wl,
                start_new_session=True,
                close_fds=True,
                env={k: v for k, v in os.environ.items() if k.startswith(("PATH", "PYTHON", "LANG", "LC_", "HOME"))},
            )
        self._procs[container_id] = proc
        _write(d / "started.json", {"pid": proc.pid, "proc_start": _proc_start(proc.pid) or "", "started_at": time.time_ns(), "boot": self.boot})
        del rec

    def _reap(self) -> None:
        for cid, p in list(self._procs.items()):
            if p.poll() is not None:
                del self._procs[cid]

    def _state(self, rec: dict[str, Any]) -> tuple[api.ContainerState.ValueType, dict[str, Any], dict[str, Any]]:
        """(CRI state, started.json, exit.json or what a dead worker means)."""
        self._reap()
        d = self._cdir(rec["id"])
        started = _read(d / "started.json")
        if started is None:
            return api.CONTAINER_CREATED, {}, {}
        ex = self._exits.get(rec["id"]) or _read(d / "exit.json")
        if ex is not None:
            self._exits[rec["id"]] = ex
            return api.CONTAINER_EXITED, started, ex
        alive = started.get("boot") == self.boot and _proc_start(int(started["pid"])) == started.get("proc_start")
        if alive:
            return api.CONTAINER_RUNNING, started, {}
        ex = _read(d / "exit.json")  # it may have ended between the two reads
        if ex is not None:
            return api.CONTAINER_EXITED, started, ex
        why = "the node rebooted" if started.get("boot") != self.boot else "the worker process was killed"
        ex = {"exit_code": KILLED, "reason": "Error", "message": why, "finished_at": time.time_ns()}
        _write(d / "exit.json", ex)
        return api.CONTAINER_EXITED, started, ex

    def _c_msg(self, rec: dict[str, Any], state: api.ContainerState.ValueType) -> api.Container:
        return api.Container(
            id=rec["id"],
            pod_sandbox_id=rec["sandbox_id"],
            metadata=api.ContainerMetadata(name=rec["metadata"]["name"], attempt=rec["metadata"]["attempt"]),
            image=api.ImageSpec(image=rec["image"]),
            image_ref=rec["image_ref"],
            state=state,
            created_at=int(rec["created_at"]),
            labels=rec["labels"],
            annotations=rec["annotations"],
        )

    async def list_containers(self, labels: dict[str, str] | None = None, *, sandbox_id: str = "") -> list[api.Container]:
        return [self._c_msg(r, self._state(r)[0]) for r in self._containers(sandbox_id) if _matches(r["labels"], labels)]

    async def container_status(self, container_id: str) -> api.ContainerStatus:
        rec = self._container(container_id)
        state, started, ex = self._state(rec)
        return api.ContainerStatus(
            id=rec["id"],
            metadata=api.ContainerMetadata(name=rec["metadata"]["name"], attempt=rec["metadata"]["attempt"]),
            state=state,
            created_at=int(rec["created_at"]),
            started_at=int(started.get("started_at") or 0),
            finished_at=int(ex.get("finished_at") or 0),
            exit_code=int(ex.get("exit_code") or 0),
            image=api.ImageSpec(image=rec["image"]),
            image_ref=rec["image_ref"],
            reason=str(ex.get("reason") or ""),
            message=str(ex.get("message") or ""),
            labels=rec["labels"],
            annotations=rec["annotations"],
            log_path=rec["log_path"],
            mounts=[api.Mount(container_path=c, host_path=h, readonly=ro) for c, h, ro in rec.get("mounts") or []],
        )

    async def container_pid(self, container_id: str) -> int:
        rec = self._container(container_id)
        state, started, _ = self._state(rec)
        return int(started["pid"]) if state == api.CONTAINER_RUNNING else 0

    async def stop_container(self, container_id: str, grace_seconds: int) -> None:
        rec = self._container(container_id)
        state, started, _ = self._state(rec)
        if state != api.CONTAINER_RUNNING:
            if state == api.CONTAINER_CREATED:
                _write(self._cdir(container_id) / "started.json", {"pid": 0, "proc_start": "", "started_at": 0, "boot": self.boot})
                _write(self._cdir(container_id) / "exit.json", {"exit_code": 0, "reason": "Completed", "message": "stopped before it started", "finished_at": time.time_ns()})
            return
        pid = int(started["pid"])
        self._signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + max(grace_seconds, 0)
        while time.monotonic() < deadline and self._state(rec)[0] == api.CONTAINER_RUNNING:
            await asyncio.sleep(0.02)
        if self._state(rec)[0] == api.CONTAINER_RUNNING:
            self._signal(pid, signal.SIGKILL)
            for _ in range(100):
                if self._state(rec)[0] != api.CONTAINER_RUNNING:
                    break
                await asyncio.sleep(0.02)

    def _signal(self, pid: int, sig: int) -> None:
        try:
            os.killpg(pid, sig)  # the worker leads its own session
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)

    async def remove_container(self, container_id: str) -> None:
        rec = self._container(container_id)
        if self._state(rec)[0] == api.CONTAINER_RUNNING:
            await self.stop_container(container_id, 0)
        d = self._cdir(container_id)
        for f in d.iterdir():
            f.unlink(missing_ok=True)
        d.rmdir()
        self._procs.pop(container_id, None)
        self._records.pop(container_id, None)
        self._exits.pop(container_id, None)

    # -- what Wasm containers cannot do ------------------------------------------------------
    async def exec_sync(self, container_id: str, cmd: list[str], *, timeout: float) -> tuple[int, bytes, bytes]:
        raise Unsupported("exec is not supported in Wasm containers (a module is one process with no shell)")

    async def exec_url(self, container_id: str, cmd: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> str:
        raise Unsupported("exec is not supported in Wasm containers (a module is one process with no shell)")

    async def attach_url(self, container_id: str, *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> str:
        raise Unsupported("attach is not supported in Wasm containers; read their output with kubectl logs")

    async def port_forward_url(self, sandbox_id: str, ports: list[int]) -> str:
        raise Unsupported("port-forward is not supported for Wasm pods (WASI preview 1 has no sockets)")

    # -- images (modules) ---------------------------------------------------------------------
    async def image_status(self, image: str) -> api.Image | None:
        found = self.modules.lookup(image)
        if found is None:
            return None
        return api.Image(id=f"sha256:{found[1]}", repo_tags=[normalize(image)], size=found[0].stat().st_size)

    async def pull_image(self, image: str, *, timeout: float = 300.0) -> str:
        raise CriError(f'Wasm modules are not pulled from registries here: load the OCI artifact of "{image}" with `edgebus image load`')

    async def list_images(self) -> list[api.Image]:
        out = []
        for name, digest in self.modules.names().items():
            p = self.modules.root / f"{digest}.wasm"
            if p.exists():
                out.append(api.Image(id=f"sha256:{digest}", repo_tags=[name], size=p.stat().st_size))
        return out

    async def remove_image(self, image: str) -> None:
        self.modules.remove(image)

    def import_archive(self, path: str | Path) -> list[str]:
        return self.modules.import_archive(path)
