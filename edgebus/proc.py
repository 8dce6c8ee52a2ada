"""Child-process helpers."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path


def parent_death_signal() -> None:
    """In a child before exec (Linux): receive SIGTERM when the parent dies, so a process a
    test or the lab started never outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def kill_matching(match: Callable[[list[bytes]], bool]) -> int:
    """SIGKILL every process whose command line (argv, as bytes) ``match`` accepts, for
    processes that outlive what started them by design (containerd shims, Wasm workers),
    once nothing else would stop them. Returns how many were killed."""
    killed = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if match(argv):
            try:
                os.kill(int(d.name), signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed
