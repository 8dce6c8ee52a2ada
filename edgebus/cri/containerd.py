"""A private containerd: configuration, process, image import (for the lab and the tests).

Each edge node of the lab (and each test that needs containers) runs its own containerd
with its own root, state, sockets and runc root, so two of them never see each other's
containers and removing the directories removes everything. Settings measured on these
machines (``notes``): runc (not crun), the CRI plugin with ``restrict_oom_score_adj =
true``, the sandbox image built offline (:mod:`edgebus.images`).

Unix socket paths are limited to 108 bytes, and test directories are deep, so the
sockets and runc's state live in a short directory under ``/run/edgebus`` named after a
hash of the root directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgebus.proc import kill_matching, parent_death_signal, stop_process
from edgebus.images import PAUSE_IMAGE

K8S_NAMESPACE = "k8s.io"


class ContainerdUnavailable(RuntimeError):
    """containerd is not installed here, or cannot be run (not root)."""


def containerd_binary() -> str | None:
    """``$EDGEBUS_CONTAINERD`` (when it exists), else ``containerd`` on PATH."""
    env = os.environ.get("EDGEBUS_CONTAINERD")
    if env:
        return env if os.path.exists(env) else None
    return shutil.which("containerd")


def ctr_binary() -> str | None:
    env = os.environ.get("EDGEBUS_CTR")
    if env:
        return env if os.path.exists(env) else None
    return shutil.which("ctr")


def usable() -> str | None:
    """None when a private containerd can run here, else why not."""
    if os.geteuid() != 0:
        return "containerd needs root (run as root, as CI does)"
    if containerd_binary() is None:
        return "containerd is not installed (apt-get install -y containerd runc)"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install -y runc)"
    if ctr_binary() is None:
        return "ctr (from the containerd package) is not installed"
    return None


def _short_dir(root: Path) -> Path:
    h = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return Path("/run/edgebus") / f"ctd-{h}"


@dataclass
class ContainerdConfig:
    root_dir: str
    sandbox_image: str = PAUSE_IMAGE
    snapshotter: str = "overlayfs"

    @property
    def run_dir(self) -> Path:
        return _short_dir(Path(self.root_dir))

    @property
    def socket(self) -> str:
        return str(self.run_dir / "containerd.sock")

    @property
    def address(self) -> str:
        return f"unix://{self.socket}"

    @property
    def config_path(self) -> Path:
        return Path(self.root_dir) / "config.toml"

    def render(self) -> str:
        r = Path(self.root_dir)
        q = _toml_str
        return "\n".join(
            [
                "version = 2",
                f"root = {q(str(r / 'root'))}",
                f"state = {q(str(r / 'state'))}",
                "oom_score = 0",
                "[grpc]",
                f"  address = {q(self.socket)}",
                "[ttrpc]",
                f"  address = {q(self.socket + '.ttrpc')}",
                "[debug]",
                f"  address = {q(str(self.run_dir / 'debug.sock'))}",
                "[metrics]",
                '  address = ""',
                "[plugins]",
                '  [plugins."io.containerd.internal.v1.opt"]',
                f"    path = {q(str(r / 'opt'))}",
                '  [plugins."io.containerd.grpc.v1.cri"]',
                f"    sandbox_image = {q(self.sandbox_image)}",
                "    restrict_oom_score_adj = true",
                '    stream_server_address = "127.0.0.1"',
                '    stream_server_port = "0"',
                "    enable_selinux = false",
                '    [plugins."io.containerd.grpc.v1.cri".containerd]',
                f"      snapshotter = {q(self.snapshotter)}",
                '      default_runtime_name = "runc"',
                '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
                '        runtime_type = "io.containerd.runc.v2"',
                '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
                f"          Root = {q(str(self.run_dir / 'runc'))}",
                "          SystemdCgroup = false",
                "",
            ]
        )


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Containerd:
    """A containerd child process with a private configuration."""

    def __init__(self, config: ContainerdConfig, *, binary: str | None = None) -> None:
        self.config = config
        self.binary = binary or containerd_binary() or "containerd"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(config.root_dir) / "containerd.log"

    @property
    def address(self) -> str:
        return self.config.address

    def write_config(self) -> Path:
        prepare_dirs(self.config)
        self.config.config_path.write_text(self.config.render())
        return self.config.config_path

    def command(self) -> list[str]:
        return [self.binary, "--config", str(self.config.config_path)]

    def start(self, *, die_with_parent: bool = False) -> None:
        self.write_config()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=parent_death_signal if die_with_parent else None
            )

    def wait_ready(self, timeout: float = 15.0) -> None:
        wait_socket(self.config.socket, timeout, self.proc, self.log_path)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, timeout)
            kill_shims(self.address)

    def remove_dirs(self) -> None:
        remove_dirs(self.config)


def kill_shims(address: str) -> int:
    """Kill shims left behind by this containerd (call once it stopped, after its pods were
    stopped). A start that containerd abandoned (its caller went away) can leave a shim
    without a task; nothing else would ever stop it."""
    sock = address.removeprefix("unix://").encode()
    return kill_matching(lambda argv: argv[0].endswith(b"containerd-shim-runc-v2") and sock in argv)


def prepare_dirs(config: ContainerdConfig) -> None:
    Path(config.root_dir).mkdir(parents=True, exist_ok=True)
    config.run_dir.mkdir(parents=True, exist_ok=True)


def remove_dirs(config: ContainerdConfig) -> None:
    """Remove the state of a stopped containerd (call after every pod was removed)."""
    for d in (Path(config.root_dir), config.run_dir):
        _unmount_below(d)
        shutil.rmtree(d, ignore_errors=True)


def _unmount_below(d: Path) -> None:
    """Unmount anything a crashed run left mounted below ``d`` (deepest first)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(d.resolve()) + "/"
    points = sorted({m.split()[1] for m in mounts if len(m.split()) > 1 and m.split()[1].startswith(prefix)}, key=len, reverse=True)
    for p in points:
        subprocess.run(["umount", "-l", p], capture_output=True, check=False)


def wait_socket(path: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"containerd exited with {proc.returncode}; see {log}")
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise TimeoutError(f"containerd socket {path} not ready after {timeout}s")


class ImageImportError(RuntimeError):
    """``ctr images import`` failed."""


def import_image(address: str, archive: str | Path, *, timeout: float = 300.0) -> list[str]:
    """Import an OCI/Docker image archive into the CRI namespace; returns the image names."""
    ctr = ctr_binary()
    if ctr is None:
        raise ImageImportError("ctr is not installed (it comes with the containerd package)")
    sock = address.removeprefix("unix://")
    try:
        cp = subprocess.run(
            [ctr, "--address", sock, "--namespace", K8S_NAMESPACE, "images", "import", str(archive)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ImageImportError(f"importing {archive} took longer than {timeout:.0f}s") from None
    if cp.returncode != 0:
        raise ImageImportError(f"ctr images import failed: {(cp.stderr or cp.stdout).strip()}")
    out = []
    for line in cp.stdout.splitlines():
        # "unpacking docker.io/library/busybox:edgebus (sha256:...)...done"
        if line.startswith("unpacking "):
            out.append(line.split()[1])
    return out
