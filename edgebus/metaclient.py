"""Client of a node's metamanager: list / get / stats over NATS request-reply, and
:class:`Mirror`, a local copy of some kinds kept current by metamanager's change events.

Local edge services use it against their own leaf server (works offline); the CLI uses it
from the cloud through the leaf connection (``edgebus node objects NODE``), which answers
only while the node's link is up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from edgebus import names
from edgebus.bus import Bus, BusMsg, NoResponders, NotConnected, RemoteError, RequestTimeout
from edgebus.envelope import OP_QUERY, Envelope
from edgebus.errors import ApiError, BadRequest, NotFound, Timeout, Unavailable

log = logging.getLogger("edgebus.metaclient")


class MetaClient:
    def __init__(self, bus: Bus, node: str, *, timeout: float = 5.0, source: str = "metaclient") -> None:
        self.bus = bus
        self.node = node
        self.timeout = timeout
        self.source = source

    async def _call(self, op: str, content: dict[str, Any]) -> Any:
        env = Envelope.new(source=self.source, operation=OP_QUERY, resource=op, content=content, sync=True)
        try:
            reply = await self.bus.call(names.meta_subject(self.node, op), env, timeout=self.timeout)
        except (NoResponders, NotConnected):
            raise Unavailable(f"node {self.node} is unreachable: its metamanager does not answer (node offline or stopped)") from None
        except RequestTimeout:
            raise Timeout(f"node {self.node} did not answer within {self.timeout}s") from None
        except RemoteError as exc:
            err: ApiError
            if exc.code == 404:
                err = NotFound(str(exc))
            elif exc.code == 400:
                err = BadRequest(str(exc))
            else:
                err = ApiError(str(exc))
            raise err from None
        return reply.content

    async def list(
        self, resource: str | None = None, namespace: str | None = None, *, label_selector: str | None = None, objects: bool = True
    ) -> dict[str, Any]:
        q: dict[str, Any] = {"objects": objects}
        if resource:
            q["resource"] = resource
        if namespace:
            q["namespace"] = namespace
        if label_selector:
            q["labelSelector"] = label_selector
        return dict(await self._call("list", q))

    async def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        return dict(await self._call("get", {"resource": resource, "namespace": namespace, "name": name}))

    async def changes(self, since: int = 0, limit: int = 1000) -> dict[str, Any]:
        """The node's change log after local revision ``since``."""
        return dict(await self._call("changes", {"since": since, "limit": limit}))

    async def stats(self) -> dict[str, Any]:
        return dict(await self._call("stats", {}))


#: change events a Mirror may hold unapplied; further behind it lists again instead
MIRROR_BUFFER = 10_000


class Mirror:
    """The objects of some kinds of a node's local store, kept equal to what metamanager
    holds: one listing per kind, then the change events metamanager publishes after each
    commit (events at or below a kind's listed revision are dropped, so nothing is applied
    twice). It re-lists every ``resync`` seconds and after :meth:`relist` (a reconnect), so
    a lost event costs at most one resync period - and a burst of commits costs one pass of
    ``on_change``, not one full re-read per commit.

    ``objects[kind]`` maps the store key to the object (status overlay included)."""

    def __init__(self, client: MetaClient, kinds: Sequence[str], *, resync: float = 30.0, settle: float = 0.0) -> None:
        self.client = client
        self.kinds = tuple(kinds)
        self.resync = resync
        self.settle = settle
        self.objects: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in self.kinds}
        self.revisions: dict[str, int] = dict.fromkeys(self.kinds, 0)
        self.loaded = False
        self._events: asyncio.Queue[tuple[str, int, dict[str, Any]]] = asyncio.Queue(MIRROR_BUFFER)
        self._wake = asyncio.Event()
        self._relist = True

    def values(self, kind: str) -> list[dict[str, Any]]:
        return list(self.objects[kind].values())

    def relist(self) -> None:
        """Re-read every kind on the next pass (after a reconnect: events may be lost)."""
        self._relist = True
        self._wake.set()

    async def _on_event(self, m: BusMsg) -> None:
        try:
            env = Envelope.decode(m.data)
        except Exception as exc:
            log.warning("undecodable change event on %s: %s", m.subject, exc)
            return
        if env.route.resource in self.objects and isinstance(env.content, dict):
            try:
                self._events.put_nowait((env.route.resource, int(env.seq or 0), env.content))
            except asyncio.QueueFull:
                # too far behind: forget the queued events and list again (level-triggered)
                while not self._events.empty():
                    self._events.get_nowait()
                self._relist = True
                log.warning("%s: %d change events behind; listing again", "/".join(self.kinds), MIRROR_BUFFER)
            self._wake.set()

    async def _list(self) -> None:
        for kind in self.kinds:
            listing = await self.client.list(kind)
            self.objects[kind] = {str(i["key"]): i["object"] for i in listing.get("items") or [] if isinstance(i, dict) and isinstance(i.get("object"), dict)}
            self.revisions[kind] = int(listing.get("revision") or 0)

    def _apply_events(self) -> None:
        while not self._events.empty():
            kind, rev, c = self._events.get_nowait()
            if rev <= self.revisions[kind]:
                continue
            self.revisions[kind] = rev
            key, obj = str(c.get("key")), c.get("object")
            if c.get("type") == "DELETED" or not isinstance(obj, dict):
                self.objects[kind].pop(key, None)
            else:
                self.objects[kind][key] = obj

    async def follow(self, on_change: Callable[[Mirror], Awaitable[None] | None]) -> None:
        """Keep the mirror current and call ``on_change`` after every listing and every
        batch of events; runs until cancelled. Listing errors are retried every 0.5 s."""
        bus, node = self.client.bus, self.client.node
        subs = [await bus.subscribe(names.meta_events_subject(node, k), self._on_event) for k in self.kinds]
        due = 0.0
        try:
            while True:
                self._wake.clear()
                if self._relist or time.monotonic() >= due:
                    self._relist = False
                    try:
                        await self._list()
                    except ApiError as exc:
                        log.info("%s not readable yet: %s", "/".join(self.kinds), exc.message)
                        self._relist = True
                        await asyncio.sleep(0.5)
                        continue
                    due = time.monotonic() + self.resync
                    self.loaded = True
                self._apply_events()
                result = on_change(self)
                if result is not None:
                    await result
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, due - time.monotonic()))
                    if self.settle:
                        await asyncio.sleep(self.settle)  # let a burst of commits settle into one pass
                except TimeoutError:
                    pass
        finally:
            for unsub in subs:
                await unsub()
