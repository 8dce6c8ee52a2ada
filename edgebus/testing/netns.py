"""Network namespaces as hosts: each "host" has its own loopback and one veth end with an
address only inside it, so processes started there reach each other only by those
addresses, over real TCP. ``cut`` takes the link down (the peer sees NO-CARRIER; no RST, as
a pulled cable), ``heal`` brings it back. Needs root and iproute2's ``ip`` and ``nsenter``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def unusable() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2, util-linux)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Hosts:
    """Two hosts joined by one link: ``a`` at 10.<net>.0.1 and ``b`` at 10.<net>.0.2."""

    names: tuple[str, str]
    net: int = 211
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls, a: str, b: str, *, net: int | None = None) -> Hosts:
        tag = f"{os.getpid() % 100000}"
        h = cls((f"eb{tag}-{a}"[:15], f"eb{tag}-{b}"[:15]), net=net if net is not None else 200 + os.getpid() % 50)
        h.short = (a, b)
        try:
            for n in h.names:
                _ip("netns", "add", n)
                _ip("-n", n, "link", "set", "lo", "up")
            _ip("link", "add", h.veth[0], "type", "veth", "peer", "name", h.veth[1])
            for n, v, addr in zip(h.names, h.veth, h.addresses, strict=True):
                _ip("link", "set", v, "netns", n)
                _ip("-n", n, "addr", "add", f"{addr}/24", "dev", v)
                _ip("-n", n, "link", "set", v, "up")
        except BaseException:
            h.destroy()
            raise
        return h

    short: tuple[str, str] = ("a", "b")

    @property
    def veth(self) -> tuple[str, str]:
        tag = self.names[0].split("-")[0]
        return (f"{tag}a", f"{tag}b")

    @property
    def addresses(self) -> tuple[str, str]:
        return (f"10.{self.net}.0.1", f"10.{self.net}.0.2")

    def ns(self, host: str) -> str:
        return self.names[self.short.index(host)]

    def address(self, host: str) -> str:
        return self.addresses[self.short.index(host)]

    def argv(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run in ``host``'s network namespace (the filesystem stays shared)."""
        return ["nsenter", f"--net=/run/netns/{self.ns(host)}", "--", *argv]

    def run(self, host: str, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(host, argv), env=env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} on {host} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
        return r

    def popen(self, host: str, argv: list[str], *, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen[bytes]:
        logf: IO[bytes] = open(log, "ab")
        p = subprocess.Popen(self.argv(host, argv), env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        self.procs.append(p)
        return p

    def link(self, host: str, up: bool) -> None:
        i = self.short.index(host)
        _ip("-n", self.names[i], "link", "set", self.veth[i], "up" if up else "down")

    def cut(self, host: str) -> None:
        self.link(host, False)

    def heal(self, host: str) -> None:
        self.link(host, True)

    def stop(self, p: subprocess.Popen[bytes], timeout: float = 60) -> None:
        """SIGTERM (what systemd sends the unit's main process), then SIGKILL."""
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)

    def destroy(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        for n in self.names:
            subprocess.run(["ip", "netns", "del", n], capture_output=True, timeout=30)  # its veth end goes with it
