"""The operations endpoint of every service: ``/healthz``, ``/readyz``, ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("edgebus.ops")


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the service runtime."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def ops_app(health: Callable[[], dict[str, object]], ready: Callable[[], dict[str, object]]) -> Starlette:
    async def healthz(_: Request) -> Response:
        body = health()
        return JSONResponse(body, status_code=200 if body.get("ok") else 503)

    async def readyz(_: Request) -> Response:
        body = ready()
        return JSONResponse(body, status_code=200 if body.get("ok") else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/livez", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ]
    )


async def serve_http(
    app: object,
    host: str,
    port: int,
    stop: asyncio.Event,
    *,
    started: asyncio.Event | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
) -> None:
    """Serve an ASGI app until ``stop`` is set (HTTPS with a certificate and key file)."""
    tls = {"ssl_certfile": ssl_certfile, "ssl_keyfile": ssl_keyfile} if ssl_certfile else {}
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False, **tls)  # type: ignore[arg-type]
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(), name=f"http:{port}")
    try:
        while not server.started:
            if task.done():
                task.result()  # raises the bind error
                return
            await asyncio.sleep(0.01)
        if started is not None:
            started.set()
        await stop.wait()
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 5)
        except (TimeoutError, asyncio.CancelledError, Exception):
            task.cancel()
