"""The watch response: newline-delimited JSON events over a chunked HTTP response.

The stream runs in its own task, raced against the client's disconnect, the request's
``timeoutSeconds`` and the service's shutdown; whichever comes first ends it, and the
event source (an object-store watch and its JetStream consumer) is closed every time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

from prometheus_client import Gauge
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("edgebus.apiserver.watch")

OPEN_WATCHES = Gauge("edgebus_apiserver_watches", "Watch streams the apiserver is serving")


class WatchResponse(Response):
    media_type = "application/json"

    def __init__(self, events: AsyncIterator[bytes], *, stop: asyncio.Event, timeout: float | None = None) -> None:
        # Like StreamingResponse: no body, so no Content-Length, so the response is chunked.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache, private"})
        self.events = events
        self.stop = stop
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        OPEN_WATCHES.inc()
        pump = asyncio.create_task(self._pump(send), name="apiserver:watch")
        disconnect = asyncio.create_task(_wait_disconnect(receive), name="apiserver:watch-disconnect")
        stopping = asyncio.create_task(self.stop.wait(), name="apiserver:watch-stop")
        tasks = {pump, disconnect, stopping}
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            await asyncio.wait(tasks, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            # The pump closes its consumer in its own task, so that happens even if we are
            # cancelled again while waiting for it.
            await asyncio.wait(tasks)
            OPEN_WATCHES.dec()
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            log.error("watch stream failed", exc_info=pump.exception())
        if not disconnect.done() or disconnect.cancelled():
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:
                pass

    async def _pump(self, send: Send) -> None:
        async with aclosing(self.events) as it:  # type: ignore[type-var]
            async for chunk in it:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
