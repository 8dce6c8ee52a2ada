"""Helpers for tests that drive the real kubectl: a kubectl with its own kubeconfig and
cache dir, a lab run in a background event loop (so several synchronous tests can share
one lab), and a line reader for ``kubectl get -w``."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edgebus.cli.kubeconfig import kubeconfig

from .conftest import RunningLab, start_lab, stop_lab

T = TypeVar("T")

KUBECTL = shutil.which("kubectl")


def versioned_kubectls() -> dict[str, str]:
    """The real per-version binaries next to the version dispatcher (``kubectl.1.27`` ...)."""
    if KUBECTL is None:
        return {}
    d = Path(os.path.realpath(KUBECTL)).parent
    return {p.name.split(".", 1)[1]: str(p) for p in sorted(d.glob("kubectl.1.*")) if os.access(p, os.X_OK)}


class Kubectl:
    def __init__(self, tmp: Path, name: str, server: str, binary: str | None = None, *, token: str | None = None, ca_pem: bytes | None = None, ca_file: str | None = None) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / f"{name}.kubeconfig"
        if ca_pem is None and ca_file and server.startswith("https://"):
            ca_pem = Path(ca_file).read_bytes()
        self.config.write_text(yaml.safe_dump(kubeconfig(server, name, token=token, ca_pem=ca_pem)))
        self.cache = tmp / f"{name}.cache"
        self.binary = binary or KUBECTL or "kubectl"
        self.server = server
        self.ca_file, self.token = ca_file, token

    def other(self, tmp: Path, name: str, binary: str) -> Kubectl:
        """The same cluster and credentials with another kubectl binary."""
        return Kubectl(tmp, name, self.server, binary, ca_file=self.ca_file, token=self.token)

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--kubeconfig", str(self.config), "--cache-dir", str(self.cache), "--request-timeout", "20s", *args]

    def run(self, *args: str, stdin: str | None = None, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cp = subprocess.run(
            self.argv(*args), input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
        )
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}): {cp.stdout}\n{cp.stderr}")
        return cp

    def out(self, *args: str, stdin: str | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout

    def fails(self, *args: str, stdin: str | None = None) -> str:
        """Run a command that must fail; its stderr."""
        cp = self.run(*args, stdin=stdin, check=False)
        assert cp.returncode != 0, f"kubectl {' '.join(args)} should have failed: {cp.stdout}"
        return cp.stderr.strip()

    def yaml(self, *args: str) -> Any:
        return yaml.safe_load(self.out(*args, "-o", "yaml"))

    def table(self, *args: str) -> tuple[list[str], list[list[str]]]:
        """``kubectl get``'s output split into the header and rows (columns split on 2+ spaces)."""
        lines = [ln for ln in self.out(*args).splitlines() if ln.strip()]
        split = [_split_cols(ln) for ln in lines]
        return split[0], split[1:]


def _split_cols(line: str) -> list[str]:
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]


class Watch:
    """A ``kubectl ... -w`` process whose output lines are read with a timeout."""

    def __init__(self, argv: list[str], *, merge_stderr: bool = False) -> None:
        err = subprocess.STDOUT if merge_stderr else subprocess.PIPE
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, text: str, timeout: float = 15.0) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"watch ended before {text!r}: {self.proc.stderr.read() if self.proc.stderr else ''}")
            if text in line:
                return line

    def next(self, timeout: float) -> str | None:
        """The next line, or None when none came within ``timeout``."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            self.lines.put(None)  # ended: keep answering None
        return line

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class BackgroundLab:
    """A lab started in an event loop of its own thread, so that synchronous tests (which
    only run kubectl) can share it; ``call`` runs a coroutine on that loop."""

    def __init__(self, tmp: Path, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lab-loop", daemon=True)
        self.thread.start()
        self.rl: RunningLab = self.call(start_lab(tmp, **kw), timeout=120)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(stop_lab(self.rl), timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
