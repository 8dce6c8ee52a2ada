"""What edgehub's tasks and its ``state`` reply share: the cloud link and the forwarding state."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from edgebus.bus import Bus
from services.edgehub.config import Settings
from services.edgehub.credentials import Credentials
from services.edgehub.downstream import Downstream


@dataclass
class Link:
    """The cloud link as edgehub sees it."""

    up: bool = False
    since: float = field(default_factory=time.time)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _up_event: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, up: bool) -> bool:
        if up == self.up:
            return False
        self.up = up
        self.since = time.time()
        if up:
            self._up_event.set()
        else:
            self._up_event.clear()
        self.changed.set()
        self.changed = asyncio.Event()
        return True

    async def wait_up(self) -> None:
        await self._up_event.wait()

    async def wait_change(self) -> None:
        await self.changed.wait()


@dataclass
class Ctx:
    node: str
    settings: Settings
    bus: Bus
    link: Link = field(default_factory=Link)
    joined: bool = False
    #: the last outbox sequence the cloud holds
    cloud_seq: int = 0
    local_last_seq: int = 0
    #: the outbox stream's creation time (its identity across re-creations)
    epoch: str = ""
    last_heartbeat: float = 0.0
    forwarded: int = 0
    #: set by the link monitor on every down->up transition: the forwarder resumes at once
    wake_forwarder: asyncio.Event = field(default_factory=asyncio.Event)
    downstream: Downstream | None = None
    credentials: Credentials | None = None
