"""The Kubernetes Events edged records, as the kubelet does (reasons and messages):
``Pulling`` / ``Pulled`` / ``Failed`` / ``BackOff`` (images), ``Created``, ``Started``,
``Killing``, ``BackOff`` (crash loop), ``Unhealthy`` (probes), ``Failed`` (container
config errors); and of the node: ``Starting``, ``Rebooted``, ``NodeReady`` /
``NodeNotReady`` (the container runtime's availability).

Events go into the node's outbox (:class:`edgebus.events.EdgeEventRecorder`), kept while
offline; one task publishes them in the order they happened. Conditions that persist (a
back-off, a missing ConfigMap) are recorded when they start, not on every sync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from edgebus import hostinfo
from edgebus.bus import Bus
from edgebus.events import NORMAL, WARNING, EdgeEventRecorder

log = logging.getLogger("edgebus.edged.events")

COMPONENT = "edged"
QUEUE = 4096


def pod_object(pod: dict[str, Any]) -> dict[str, Any]:
    md = pod.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Pod", "namespace": md.get("namespace") or "default", "name": md.get("name") or "", "uid": md.get("uid") or ""}


def container_path(name: str) -> str:
    return f"spec.containers{{{name}}}"


class Events:
    def __init__(self, bus: Bus, node: str) -> None:
        self.node = node
        self.recorder = EdgeEventRecorder(bus, node, COMPONENT)
        self._q: asyncio.Queue[tuple[dict[str, Any], str, str, str, str, int]] = asyncio.Queue(QUEUE)
        self.dropped = 0

    def emit(self, ref: dict[str, Any], type_: str, reason: str, message: str, *, field_path: str = "") -> None:
        """Record an event (never blocks; the time is now)."""
        try:
            self._q.put_nowait((ref, type_, reason, message, field_path, time.time_ns()))
        except asyncio.QueueFull:
            self.dropped += 1

    def pod(self, pod: dict[str, Any], type_: str, reason: str, message: str, container: str = "") -> None:
        self.emit(pod_object(pod), type_, reason, message, field_path=container_path(container) if container else "")

    def node_event(self, type_: str, reason: str, message: str) -> None:
        self.emit({"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self.node}, type_, reason, message)

    async def run(self) -> None:
        """Publish in order (a supervised task)."""
        while True:
            ref, type_, reason, message, field_path, t = await self._q.get()
            await self.recorder.record(ref, type_, reason, message, field_path=field_path, time_ns=t)

    # -- the node ---------------------------------------------------------------------------
    def started(self, data_dir: str) -> None:
        """``Starting``, and ``Rebooted`` when the machine booted since the last start."""
        self.node_event(NORMAL, "Starting", "Starting edged.")
        boot = hostinfo.machine().get("bootID") or ""
        path = Path(data_dir) / "boot_id"
        try:
            last = path.read_text().strip() if path.exists() else ""
            if boot and last and last != boot:
                self.node_event(WARNING, "Rebooted", f"Node {self.node} has been rebooted, boot id: {boot}")
            if boot and boot != last:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(boot)
        except OSError as exc:
            log.warning("boot id not recorded: %s", exc)

    def runtime(self, ok: bool) -> None:
        reason = "NodeReady" if ok else "NodeNotReady"
        self.node_event(NORMAL, reason, f"Node {self.node} status is now: {reason}")
