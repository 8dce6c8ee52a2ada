"""Processes the all-in-one process runs beside its services on a node's own host: the
node's nats-server (and its containerd, when it runs pods). Started before the services,
each waited for (its TCP port or Unix socket), restarted when it dies, stopped after the
services (a containerd's pods first, as a power-off does).

A child is described by a JSON object (written by ``edgebus node start --all-in-one``)::

    {"name": "nats", "argv": [...], "env": {...}, "log": "...", "host": "127.0.0.1",
     "ready_port": 4222, "ready_socket": null, "cri_address": null,
     "config_file": "...", "config_text": "..."}
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebus.backoff import delay_for
from edgebus.proc import parent_death_signal

log = logging.getLogger("edgebus.allinone")


@dataclass
class Child:
    name: str
    argv: list[str]
    log: str
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    ready_port: int | None = None
    ready_socket: str | None = None
    cri_address: str | None = None
    config_file: str | None = None
    config_text: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Child:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d and k not in ("popen", "restarts")})

    def spawn(self) -> None:
        Path(self.log).parent.mkdir(parents=True, exist_ok=True)
        if self.config_file and self.config_text is not None:
            Path(self.config_file).parent.mkdir(parents=True, exist_ok=True)
            Path(self.config_file).write_text(self.config_text)
        with open(self.log, "ab") as logf:
            self.popen = subprocess.Popen(
                self.argv, env={**os.environ, **self.env}, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=parent_death_signal
            )
        log.info("started %s (pid %d)", self.name, self.popen.pid)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode if self.popen else '?'}; see {self.log}")
            try:
                if self.ready_port:
                    _, w = await asyncio.open_connection(self.host, self.ready_port)
                elif self.ready_socket:
                    _, w = await asyncio.open_unix_connection(self.ready_socket)
                else:
                    return
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s; see {self.log}")

    async def stop(self, timeout: float = 10.0) -> None:
        if not self.alive or self.popen is None:
            return
        if self.cri_address:
            await _remove_pods(self.cri_address)
        self.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.popen.poll() is None:
            self.popen.kill()
            await asyncio.to_thread(self.popen.wait, 5)
        if self.cri_address:
            from edgebus.cri.containerd import kill_shims

            kill_shims(self.cri_address)


async def exited(c: Child) -> None:
    """Until the child's process has ended: its pidfd becomes readable then, so this is an
    event of the event loop, not a poll (the kernel tells; nothing wakes while it runs)."""
    if c.popen is None or c.popen.poll() is not None:
        return
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(c.popen.pid)
    except OSError:  # no pidfd (Linux < 5.3): look twice a second
        while c.popen.poll() is None:
            await asyncio.sleep(0.5)
        return
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class Children:
    def __init__(self, children: list[Child]) -> None:
        self.children = children
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    def load(cls, path: str) -> Children:
        return cls([Child.from_dict(d) for d in json.loads(Path(path).read_text())])

    async def start(self) -> None:
        for c in self.children:
            c.spawn()
            await c.wait_ready()
        self._watch = asyncio.create_task(self._watchdog(), name="children")

    async def _watchdog(self) -> None:
        await asyncio.gather(*(self._keep(c) for c in self.children))

    async def _keep(self, c: Child) -> None:
        """Restart ``c`` whenever it exits, with back-off."""
        while True:
            await exited(c)
            if c.popen is None or c.popen.poll() is None:
                continue
            c.restarts += 1
            delay = delay_for(c.restarts, 0.5, 10.0)
            log.warning("%s exited with %s; restarting in %.1fs", c.name, c.popen.returncode, delay)
            c.popen = None
            await asyncio.sleep(delay)
            c.spawn()


    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for c in reversed(self.children):
            await c.stop()

    def state(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "pid": c.popen.pid if c.alive and c.popen else None, "restarts": c.restarts} for c in self.children]


async def _remove_pods(address: str) -> None:
    """Stop and remove the pods of a node's containerd before stopping it (what the lab does)."""
    from edgebus.cri import CriClient, CriError, remove_all

    cri = CriClient(address, timeout=10)
    try:
        n = await remove_all(cri, None, remove=True)
        if n:
            log.info("removed %d pod sandboxes at %s", n, address)
    except CriError as exc:
        log.warning("could not stop the pods at %s: %s", address, exc)
    finally:
        await cri.close()
