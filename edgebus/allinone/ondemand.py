"""Which optional edge services a node needs now, from what its local store holds.

The Modbus and OPC-UA mappers are needed while a Device of their protocol is bound to the
node; edgemesh while the node has Services to serve (edgecontroller routes every Service to
every node) or pods whose resolv.conf names its DNS (``dnsPolicy`` ClusterFirst). :class:`Demand` follows metamanager (a :class:`~edgebus.metaclient.Mirror` of
Devices and Services: a local listing, then commit events, so it works offline) and reports
the wanted set on every change; a service no longer needed is reported unwanted only after
``linger`` seconds, so a Device re-applied at once does not restart its mapper.

Both ways of running a node use it: the all-in-one host starts and stops the services
inside its process, the lab's supervisor starts and stops their processes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from edgebus import clock
from edgebus.metaclient import MetaClient, Mirror
from edgebus.objects import DEVICES, PODS, SERVICES, poddns
from edgebus.objects.devices import PROTOCOL_MODBUS, PROTOCOL_OPCUA, device_node, device_protocol

log = logging.getLogger("edgebus.ondemand")

#: optional service -> what makes a node need it
MAPPERS = {"mappers.modbus": PROTOCOL_MODBUS, "mappers.opcua": PROTOCOL_OPCUA}
EDGEMESH = "edgemesh"
OPTIONAL = (EDGEMESH, *MAPPERS)


def needed(node: str, devices: Iterable[dict[str, Any]], services: Iterable[dict[str, Any]], pods: Iterable[dict[str, Any]] = ()) -> set[str]:
    """The optional services ``node`` needs for these Devices, Services and pods (pure)."""
    out: set[str] = set()
    protocols = {device_protocol(d) for d in devices if device_node(d) in (node, None)}
    out.update(svc for svc, proto in MAPPERS.items() if proto in protocols)
    if any(True for _ in services):
        out.add(EDGEMESH)
    elif any(_uses_cluster_dns(node, p) for p in pods):
        out.add(EDGEMESH)  # its DNS is the pods' nameserver (also for names outside the cluster)
    return out


def _uses_cluster_dns(node: str, pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") if isinstance(pod, dict) else None
    if not isinstance(spec, dict) or spec.get("nodeName") != node:
        return False
    return poddns.effective_policy(pod, ["cluster"]) == poddns.CLUSTER_FIRST


class Linger:
    """Turns the instantaneous need into the wanted set: a service stays wanted ``linger``
    seconds after it was last needed (pure, clock passed in)."""

    def __init__(self, linger: float) -> None:
        self.linger = linger
        self.last_needed: dict[str, float] = {}

    def wanted(self, need: set[str], now: float) -> set[str]:
        for s in need:
            self.last_needed[s] = now
        return {s for s, t in self.last_needed.items() if s in need or now - t < self.linger}

    def next_change(self, need: set[str], now: float) -> float | None:
        """Seconds until a lingering service becomes unwanted (None: none lingers)."""
        left = [self.linger - (now - t) for s, t in self.last_needed.items() if s not in need and now - t < self.linger]
        return max(0.0, min(left)) if left else None


class Demand:
    """Follows the node's store and calls ``apply(wanted)`` whenever the wanted set of
    optional services (restricted to ``candidates``) changes; runs until cancelled."""

    def __init__(
        self,
        meta: MetaClient,
        candidates: Iterable[str],
        apply: Callable[[set[str]], Awaitable[None]],
        *,
        linger: float = 60.0,
        resync: float = 30.0,
    ) -> None:
        self.node = meta.node
        self.candidates = set(candidates)
        self.apply = apply
        self.mirror = Mirror(meta, (DEVICES.plural, SERVICES.plural, PODS.plural), resync=resync, settle=0.05)
        self.linger = Linger(linger)
        self.wanted: set[str] | None = None
        self._need: set[str] = set()
        self._changed = asyncio.Event()

    def relist(self) -> None:
        self.mirror.relist()

    async def _on_change(self, m: Mirror) -> None:
        self._need = needed(self.node, m.values(DEVICES.plural), m.values(SERVICES.plural), m.values(PODS.plural)) & self.candidates
        self._changed.set()

    async def run(self) -> None:
        follower = asyncio.create_task(self.mirror.follow(self._on_change), name="demand-mirror")
        try:
            while True:
                self._changed.clear()
                now = time.monotonic()
                if self.mirror.loaded:
                    wanted = self.linger.wanted(self._need, now)
                    if wanted != self.wanted:
                        log.info("optional services wanted on %s: %s", self.node, ", ".join(sorted(wanted)) or "none")
                        self.wanted = wanted
                        await self.apply(set(wanted))
                wait = self.linger.next_change(self._need, now)
                await clock.wait_set(self._changed, wait)
                if follower.done():
                    follower.result()  # re-raises what stopped the mirror
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
