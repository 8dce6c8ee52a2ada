"""Socket activation of the DMI server: devicetwin holds the DMI unix socket with a plain
asyncio listener (no gRPC loaded) until the first mapper connects, then starts the gRPC
server on the same path and relays that first connection to it; later connections reach
gRPC directly. A node without DMI mappers never loads grpc (about 12 MB per process).

The relay is raw bytes (HTTP/2 is not parsed); a client that connects in the instant between
the listener closing and gRPC binding gets a refused connection, which gRPC clients retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger("edgebus.dmi")

_CHUNK = 64 * 1024


class FirstConnection:
    """Holds ``path`` until a client connects; :meth:`wait` returns that client's streams."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._server: asyncio.base_events.Server | None = None
        self._first: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None

    async def listen(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket() or self.path.exists():
            os.unlink(self.path)  # a stale socket of a previous run
        self._first = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result((r, w))
        else:  # a second client before gRPC took over: it reconnects to gRPC
            w.close()

    async def wait(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The first client; the listener is closed and the path removed (gRPC binds it next)."""
        assert self._first is not None, "listen() first"
        try:
            return await self._first
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


async def relay(r: asyncio.StreamReader, w: asyncio.StreamWriter, path: str | Path) -> None:
    """Relay the accepted client (``r``, ``w``) to the server now listening on ``path``,
    both ways, until either side closes."""
    try:
        ur, uw = await asyncio.open_unix_connection(str(path))
    except OSError as exc:
        log.warning("DMI: relaying the first mapper connection failed: %s", exc)
        w.close()
        return

    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(_CHUNK):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    await asyncio.gather(pump(r, uw), pump(ur, w))
