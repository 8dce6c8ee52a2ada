"""What devicetwin's parts share: the twins, the node's devices and models as metamanager
has them, and the flags between them. One :class:`TwinState` per process, passed to
``hw``, ``sync``, ``upstream``, ``api`` and ``dmi`` (none of them keeps state of its own)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgebus.bus import Bus, BusError
from edgebus.devices import hw
from edgebus.metaclient import MetaClient
from services.devicetwin import logic
from services.devicetwin.logic import Key, Seen
from services.devicetwin.config import DeviceTwinSettings
from services.devicetwin.store import TwinStore

log = logging.getLogger("edgebus.devicetwin")



@dataclass
class TwinState:
    node: str
    cfg: DeviceTwinSettings
    bus: Bus
    store: TwinStore
    meta: MetaClient
    #: the twins by (namespace, device), loaded from the store at start
    twins: dict[Key, dict[str, Any]]
    #: the node's member devices (device + model), built by ``sync``
    infos: dict[Key, logic.DeviceInfo] = field(default_factory=dict)
    devices: dict[Key, Seen] = field(default_factory=dict)
    models: dict[Key, Seen] = field(default_factory=dict)
    #: devices whose twin changed since the last report to the cloud
    dirty: set[Key] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    synced: bool = False
    firings: int = 0
    #: called when a device joins, changes, leaves or gets a new desired value (DMI)
    on_change: list[Callable[[Key], None]] = field(default_factory=list)
    #: the DMI bridge (``dmi.DmiBridge``) when DMI is served; it only listens on ``on_change``
    dmi: object | None = None

    def mark(self, key: Key) -> None:
        """The twin of ``key`` changed: report it upstream."""
        self.dirty.add(key)
        self.wake.set()

    def changed(self, key: Key) -> None:
        for hook in self.on_change:
            hook(key)

    def twin_of(self, key: Key) -> dict[str, Any]:
        return self.twins.get(key) or logic.new_twin()

    async def send(self, subject: str, body: dict[str, Any]) -> None:
        """Publish a ``$hw`` body (core NATS; a lost one is re-asked by its device)."""
        try:
            await self.bus.publish(subject, hw.dumps(body))
        except BusError as exc:
            log.debug("publish %s failed: %s", subject, exc)
