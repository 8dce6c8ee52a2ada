"""The cluster IP allocator: one KV entry per address held by a Service.

An address is reserved with a create-only write of its key (``names.cluster_ip_key``) in
the bucket :data:`edgebus.names.BUCKET_CLUSTERIPS`, holding the Service's
``<namespace>/<name>`` and uid; the server decides between two writers racing for one
address (two apiservers, or an apiserver and a cloudhub forwarding an edge's write), so an
address is never handed out twice. The Service's delete releases it (only the holder's own
entry: a later Service that took the address over keeps it).

A reservation whose Service does not exist (an apiserver stopped between reserving and
storing the Service) is stale: an explicit request for that address takes it over (a
compare-and-set on the entry's revision), and when no address is free the stale ones are
reclaimed. The rules (ranges, headless, user-set addresses) are in
:mod:`edgebus.objects.clusterip`.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Awaitable, Callable

from edgebus import names
from edgebus.bus import KV, Bus, KeyExists, KVEntry, WrongRevision
from edgebus.errors import ApiError, Invalid
from edgebus.objects.clusterip import candidates, parse_cidr

log = logging.getLogger("edgebus.clusterips")

#: addresses tried by a create-only write before the stale reservations are looked at
MAX_TRIES = 256

#: (namespace, name, uid) -> whether that Service exists (with that uid)
Exists = Callable[[str, str, str], Awaitable[bool]]


class RangeFull(ApiError):
    code = 500
    reason = "InternalError"


def _holder(ns: str, name: str, uid: str) -> bytes:
    return json.dumps({"service": f"{ns}/{name}", "uid": uid}).encode()


def _parse_holder(e: KVEntry | None) -> tuple[str, str, str] | None:
    if e is None or e.deleted or not e.value:
        return None
    try:
        d = json.loads(e.value)
        ns, _, name = str(d["service"]).partition("/")
        return ns, name, str(d["uid"])
    except (ValueError, KeyError, TypeError):
        return ("", "", "")  # unreadable: treated as stale


class ClusterIPs:
    def __init__(self, bus: Bus, cidr: str, *, replicas: int = 1, rng: random.Random | None = None) -> None:
        self.kv = KV(bus, names.BUCKET_CLUSTERIPS)
        self.net = parse_cidr(cidr)
        self.replicas = replicas
        self.rng = rng or random.Random()

    async def ensure(self) -> None:
        await self.kv.ensure(history=1, replicas=self.replicas)

    async def holder(self, ip: str) -> tuple[str, str, str] | None:
        return _parse_holder(await self.kv.get(names.cluster_ip_key(ip)))

    async def reserve(self, ns: str, name: str, uid: str, exists: Exists, ip: str | None = None) -> str:
        """Reserve ``ip`` (checked by the caller to be in range) or any free address."""
        value = _holder(ns, name, uid)
        if ip is not None:
            if await self._take(ip, value, exists):
                return ip
            raise Invalid(
                f'Service "{name}" is invalid: spec.clusterIPs: Invalid value: ["{ip}"]: failed to allocate IP {ip}: provided IP is already allocated',
                details={
                    "name": name,
                    "kind": "services",
                    "causes": [
                        {"field": "spec.clusterIPs", "reason": "FieldValueInvalid", "message": f"failed to allocate IP {ip}: provided IP is already allocated"}
                    ],
                },
            )
        for i, cand in enumerate(candidates(self.net, self.rng)):
            if i >= MAX_TRIES:
                break
            try:
                await self.kv.create(names.cluster_ip_key(cand), value)
                return cand
            except KeyExists:
                continue
        entries, _ = await self.kv.list(">")
        for e in entries:
            holder = _parse_holder(e)
            if holder is not None and not await exists(*holder):
                held = _ip_of_key(e.key)
                if held is not None and await self._take(held, value, exists, entry=e):
                    log.info("reclaimed cluster IP %s (held by %s, which does not exist)", held, "/".join(holder[:2]))
                    return held
        # far more addresses than reservations, yet the random tries all hit taken ones, or
        # every address is held: scan the rest in order
        for cand in candidates(self.net, self.rng):
            try:
                await self.kv.create(names.cluster_ip_key(cand), value)
                return cand
            except KeyExists:
                continue
        raise RangeFull(f"Internal error occurred: failed to allocate a serviceIP: range is full ({self.net})")

    async def _take(self, ip: str, value: bytes, exists: Exists, *, entry: KVEntry | None = None) -> bool:
        key = names.cluster_ip_key(ip)
        try:
            await self.kv.create(key, value)
            return True
        except KeyExists:
            pass
        e = entry or await self.kv.get(key)
        holder = _parse_holder(e)
        if e is None or holder is None:
            return False  # freed meanwhile and taken again, or a race: let the caller retry
        if await exists(*holder):
            return False
        try:
            await self.kv.update(key, value, e.revision)
            return True
        except WrongRevision:
            return False

    async def release(self, ip: str, uid: str) -> None:
        """Free ``ip`` if the Service ``uid`` holds it (errors are logged: a leftover entry is
        stale and reclaimed later)."""
        key = names.cluster_ip_key(ip)
        try:
            e = await self.kv.get(key)
            holder = _parse_holder(e)
            if e is None or holder is None or holder[2] != uid:
                return
            await self.kv.delete(key, revision=e.revision)
        except WrongRevision:
            pass
        except Exception as exc:  # never fails the Service's delete
            log.warning("could not release cluster IP %s: %r", ip, exc)

    async def peek(self) -> str | None:
        """An address that is free now (dry runs: nothing is reserved)."""
        for i, cand in enumerate(candidates(self.net, self.rng)):
            if i >= MAX_TRIES:
                return None
            if await self.holder(cand) is None:
                return cand
        return None


def _ip_of_key(key: str) -> str | None:
    prefix = names.cluster_ip_key("")
    return key[len(prefix) :].replace("-", ".") if key.startswith(prefix) else None
