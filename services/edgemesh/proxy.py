"""The L4 (TCP) proxy: one listener per Service port on the Service's node-local address.

A connection goes to one ready endpoint picked by the Service's policy: directly when the
endpoint is on this node (a splice of two sockets), through a NATS tunnel when it is on
another node. If the pick cannot be reached, the next ready endpoints are tried (up to
``max_attempts``); with none left the client's connection is reset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from edgebus.errors import Unavailable
from services.edgemesh import logic
from services.edgemesh.pipe import Conn, Splice
from services.edgemesh.tunnel import Tunnels

log = logging.getLogger("edgebus.edgemesh.proxy")

CONNECTIONS = Counter("edgebus_mesh_connections_total", "Proxied connections, by how they were served", ["outcome"])
LISTENERS = Gauge("edgebus_mesh_listeners", "Service ports the proxy listens on")


class _Inbound(Conn):
    def __init__(self, proxy: Proxy, key: tuple[str, int]) -> None:
        super().__init__()
        self.proxy = proxy
        self.key = key

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.proxy.spawn(self.proxy.route(self.key, self))


class Proxy:
    def __init__(
        self,
        node: str,
        tunnels: Tunnels,
        table: Callable[[], logic.Table],
        *,
        balancer: logic.Balancer | None = None,
        connect_timeout: float = 3.0,
        max_attempts: int = 3,
    ) -> None:
        self.node = node
        self.tunnels = tunnels
        self.table = table
        self.balancer = balancer or logic.Balancer()
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self.servers: dict[tuple[str, int], asyncio.AbstractServer] = {}
        self.errors: dict[tuple[str, int], str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def sync(self, table: logic.Table) -> None:
        """Listen on exactly the table's Service ports."""
        want = set(table.listeners)
        for key in list(self.servers):
            if key not in want:
                self.servers.pop(key).close()
                log.info("stopped listening on %s:%d", *key)
        loop = asyncio.get_running_loop()
        for key in sorted(want - set(self.servers)):
            host, port = key
            try:
                self.servers[key] = await loop.create_server(lambda k=key: _Inbound(self, k), host, port, reuse_address=True)  # type: ignore[misc]
                self.errors.pop(key, None)
                log.info("listening on %s:%d for %s/%s", host, port, *table.listeners[key][0])
            except OSError as exc:
                if self.errors.get(key) != str(exc):
                    log.warning("cannot listen on %s:%d: %s", host, port, exc)
                self.errors[key] = str(exc)
        LISTENERS.set(len(self.servers))

    async def route(self, key: tuple[str, int], conn: Conn) -> None:
        table = self.table()
        found = table.listeners.get(key)
        svc = table.services.get(found[0]) if found else None
        if found is None or svc is None:
            conn.abort()
            return
        order = self.balancer.order(found[0], svc.policy, found[1], self.max_attempts)
        loop = asyncio.get_running_loop()
        for ep in order:
            try:
                if ep.node in (self.node, ""):
                    async with asyncio.timeout(self.connect_timeout):
                        _, backend = await loop.create_connection(Conn, ep.ip, ep.port)
                    Splice(conn, backend).start()
                    CONNECTIONS.labels("local").inc()
                else:
                    await self.tunnels.open(ep.node, ep.ip, ep.port, conn)
                    CONNECTIONS.labels("tunnel").inc()
                return
            except (OSError, TimeoutError, Unavailable) as exc:
                log.info("%s/%s: endpoint %s:%d on %s failed: %s", *found[0], ep.ip, ep.port, ep.node or self.node, exc)
        CONNECTIONS.labels("no-endpoint" if not order else "failed").inc()
        conn.abort()

    async def stop(self) -> None:
        for srv in self.servers.values():
            srv.close()
        self.servers.clear()
        for t in list(self._tasks):
            t.cancel()
