"""Client of a node's metamanager: list / get / stats / watch over NATS request-reply.

Local edge services use it against their own leaf server (works offline); the CLI uses it
from the cloud through the leaf connection (``edgebus node objects NODE``), which answers
only while the node's link is up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from edgebus import names
from edgebus.bus import Bus, BusMsg, NoResponders, NotConnected, RemoteError, RequestTimeout
from edgebus.envelope import OP_QUERY, Envelope
from edgebus.errors import ApiError, BadRequest, NotFound, Timeout, Unavailable


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

    async def watch(self, resource: str) -> AsyncIterator[dict[str, Any]]:
        """Current objects (``type: ADDED``) then changes, level-triggered: events at or
        below the list's revision are dropped, so nothing is delivered twice."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_event(m: BusMsg) -> None:
            try:
                env = Envelope.decode(m.data)
            except Exception:
                return
            if isinstance(env.content, dict):
                queue.put_nowait({**env.content, "revision": env.seq})

        unsub = await self.bus.subscribe(names.meta_events_subject(self.node, resource), on_event)
        try:
            listing = await self.list(resource)
            rev = int(listing.get("revision") or 0)
            for item in listing.get("items") or []:
                yield {"type": "ADDED", "key": item["key"], "object": item.get("object"), "revision": item.get("revision")}
            while True:
                ev = await queue.get()
                if int(ev.get("revision") or 0) <= rev:
                    continue
                rev = int(ev["revision"])
                yield ev
        finally:
            await unsub()
