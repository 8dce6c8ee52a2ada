"""A pseudo-terminal pair for Modbus RTU tests: ``socat`` (Debian's) links two ptys, so a
serial server on one end and a serial client on the other talk as over a null-modem cable."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

SOCAT = shutil.which("socat")


class PtyPair:
    def __init__(self, directory: Path) -> None:
        if SOCAT is None:
            raise RuntimeError("socat is not installed (./dev setup installs it as root)")
        self.a = directory / "tty-a"
        self.b = directory / "tty-b"
        self.proc = subprocess.Popen(
            [SOCAT, "-d", f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not (self.a.exists() and self.b.exists()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("socat did not create the pty pair")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
