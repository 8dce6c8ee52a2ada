"""A memory cgroup (v1) of one's own, to run processes under a hard memory limit and see
whether the kernel had to OOM-kill anything (tests and benchmarks; needs root)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/memory")


def skip_reason() -> str | None:
    """Why a memory cgroup cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "memory cgroups need root"
    if not (ROOT / "memory.limit_in_bytes").exists():
        return f"no cgroup v1 memory controller at {ROOT}"
    return None


class MemoryCgroup:
    """``/sys/fs/cgroup/memory/<name>`` with ``limit`` bytes (no swap beyond it)."""

    def __init__(self, name: str, limit: int) -> None:
        self.path = ROOT / name
        self.path.mkdir()
        self._write("memory.limit_in_bytes", str(limit))
        memsw = self.path / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            try:
                memsw.write_text(str(limit))
            except OSError:
                pass
        self.limit = limit

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def join(self) -> None:
        """Move the calling process into the cgroup (in a child before ``exec``: everything
        the program allocates is charged here)."""
        self._write("cgroup.procs", str(os.getpid()))

    def pids(self) -> list[int]:
        return [int(p) for p in self._read("cgroup.procs").split()]

    @property
    def usage(self) -> int:
        return int(self._read("memory.usage_in_bytes"))

    @property
    def max_usage(self) -> int:
        return int(self._read("memory.max_usage_in_bytes"))

    @property
    def failcnt(self) -> int:
        """How often usage hit the limit (the kernel then reclaimed, e.g. page cache)."""
        return int(self._read("memory.failcnt"))

    @property
    def oom_kills(self) -> int:
        """Processes the kernel OOM-killed in this cgroup."""
        for line in self._read("memory.oom_control").splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0

    def stat(self) -> dict[str, int]:
        return {k: int(v) for k, v in (ln.split() for ln in self._read("memory.stat").splitlines())}

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left in it (it should be empty by now), then remove it."""
        deadline = time.monotonic() + timeout
        while self.path.exists() and time.monotonic() < deadline:
            left = self.pids()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        if self.path.exists():
            self.path.rmdir()
