"""The service runtime: one process, one bus connection, routes, tasks, ops endpoint,
signals and graceful drain.

A service is assembled in its ``service.py``::

    svc = Service("metamanager", settings, router=handlers.router)
    svc.ctx = Context(...)            # what every handler receives
    svc.on_start(ensure_streams)      # retried until it succeeds
    svc.task("link-monitor", monitor) # supervised, restarted on crash
    await svc.run()                   # until SIGTERM / SIGINT, then drain
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from prometheus_client import Gauge

from edgebus import names
from edgebus.bus import CLOUD_LIMITS, EDGE_LIMITS, Backoff, Bus, BusError, Recorder, Router, serve
from edgebus.bus.lease import Lease
from edgebus.errors import RetryLater
from edgebus.logctx import ContextFilter
from edgebus.runtime.ops import ops_app, serve_http
from edgebus.runtime.settings import ServiceSettings
from edgebus.runtime.tasks import Supervisor

log = logging.getLogger("edgebus.service")

C = TypeVar("C")

BUS_CONNECTED = Gauge("edgebus_bus_connected", "1 while the service is connected to its NATS server", ["service"])
SERVICE_READY = Gauge("edgebus_service_ready", "1 while the service is ready", ["service"])

Hook = Callable[["Service[Any]"], Awaitable[None]]


def setup_logging(service: str, settings: ServiceSettings) -> None:
    handler: logging.Handler
    if settings.log.file:
        handler = logging.FileHandler(settings.log.file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter(service, settings.node))
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(node)s/%(service)s %(name)s [msg=%(msg_id)s parent=%(parent_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log.level.upper())
    for noisy in ("nats", "uvicorn.error", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class Service(Generic[C]):
    def __init__(self, name: str, settings: ServiceSettings, *, router: Router[C] | None = None) -> None:
        self.name = name
        self.settings = settings
        self.router: Router[C] = router or Router(name)
        self.bus = Bus(
            settings.nats.servers(),
            name=f"{name}@{settings.node}" if settings.node else name,
            ping_interval=settings.nats.ping_interval,
            request_timeout=settings.nats.request_timeout,
            auth=settings.nats.auth(),
            node=settings.node,
            replicas=settings.nats.replicas,
        )
        self.supervisor = Supervisor(name)
        #: the JetStream domain this process's server belongs to: its dead letters stay there
        self.domain = names.node_domain(settings.node) if settings.node else settings.cloud_domain
        self.recorder = Recorder(self.bus, name, domain=self.domain, limits=EDGE_LIMITS if settings.node else CLOUD_LIMITS)
        self.ctx: C | None = None
        self.stopping = asyncio.Event()
        self.stopped = asyncio.Event()
        self.started_at = time.time()
        self._start_hooks: list[Hook] = []
        self._stop_hooks: list[Hook] = []
        self._tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        self._checks: dict[str, Callable[[], bool]] = {}
        self._routes_ready: set[str] = set()
        self._hooks_done = False
        self._route_stop = asyncio.Event()
        self._http_stop = asyncio.Event()
        self._http_task: asyncio.Task[None] | None = None
        self.bus.on_state(lambda up: BUS_CONNECTED.labels(name).set(1 if up else 0))

    # -- assembly ---------------------------------------------------------------------
    def on_start(self, hook: Hook) -> Hook:
        self._start_hooks.append(hook)
        return hook

    def on_stop(self, hook: Hook) -> Hook:
        self._stop_hooks.append(hook)
        return hook

    def task(self, name: str, fn: Callable[[], Awaitable[None]]) -> None:
        """A supervised background task, started after the start hooks."""
        self._tasks.append((name, fn))

    def readiness_check(self, name: str, fn: Callable[[], bool]) -> None:
        self._checks[name] = fn

    def lead(self, role: str, work: Callable[[], Coroutine[Any, Any, None]], *, ttl: float, synced: Callable[[], bool]) -> Lease:
        """Run ``work`` as a supervised task only while this replica holds the ``role``
        lease (the others stand by and take over within ``ttl``); ready when ``synced()`` or
        standing by; the lease is released on stop so a standby takes over at once."""
        lease = Lease(self.bus, role, ttl=ttl)
        # one service may lead several roles (cloudhub: node lifecycle and identity)
        self.task(f"lease:{role}", lease.run)
        self.task(f"lead:{role}", lambda: lease.while_leader(work))
        self.readiness_check(f"synced:{role}", lambda: synced() or not lease.is_leader)
        self.on_stop(lambda _s: lease.release())
        return lease

    # -- state ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        ok = self.supervisor.healthy() and not self.stopped.is_set()
        return {
            "ok": ok,
            "service": self.name,
            "node": self.settings.node,
            "tasks": {n: {"running": s.running, "restarts": s.restarts, "last_error": s.last_error} for n, s in self.supervisor.states.items()},
        }

    def ready(self) -> dict[str, object]:
        checks = {
            "bus": self.bus.connected,
            "started": self._hooks_done,
            "routes": len(self._routes_ready) == len(self.router.routes),
        }
        for n, fn in self._checks.items():
            try:
                checks[n] = bool(fn())
            except Exception:
                checks[n] = False
        ok = all(checks.values()) and not self.stopping.is_set()
        SERVICE_READY.labels(self.name).set(1 if ok else 0)
        return {"ok": ok, "service": self.name, "node": self.settings.node, "checks": checks}

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.ops.port:
            started = asyncio.Event()
            self._http_task = asyncio.create_task(
                serve_http(ops_app(self.health, self.ready), self.settings.ops.host, self.settings.ops.port, self._http_stop, started=started),
                name="ops-http",
            )
            await asyncio.wait({self._http_task, asyncio.create_task(started.wait())}, return_when=asyncio.FIRST_COMPLETED)
            if self._http_task.done():
                self._http_task.result()
        await self.bus.connect()
        self.supervisor.start("dlq-stream", self._ensure_dlq)
        for hook in self._start_hooks:
            await self._retry(hook)
        self._hooks_done = True
        for route in self.router.routes:
            self.supervisor.start(f"route:{route.name}", self._route_runner(route))
        for name, fn in self._tasks:
            self.supervisor.start(name, fn)
        log.info("%s started", self.name)

    def _route_runner(self, route: Any) -> Callable[[], Awaitable[None]]:
        def mark() -> None:
            self._routes_ready.add(route.name)

        async def run() -> None:
            await serve(self.bus, route, self.ctx, self.recorder, self._route_stop, on_ready=mark)

        return run

    async def _retry(self, hook: Hook) -> None:
        backoff = Backoff(0.2, 5.0)
        while True:
            try:
                await hook(self)
                return
            except RetryLater as exc:
                delay = backoff.next()
                log.info("start hook %s: %s; retrying in %.1fs", getattr(hook, "__name__", hook), exc, delay)
            except Exception as exc:
                delay = backoff.next()
                log.warning("start hook %s failed: %r; retrying in %.1fs", getattr(hook, "__name__", hook), exc, delay)
            await asyncio.sleep(delay)

    async def _ensure_dlq(self) -> None:
        """Ensure the domain's dead-letter stream, retrying until it exists (rejects are
        kept, not terminated, until their copy can be stored)."""
        backoff = Backoff(0.5, 10.0)
        failures = 0
        while True:
            try:
                await self.recorder.ensure()
                return
            except BusError as exc:
                failures += 1
                (log.warning if failures >= 3 else log.info)("dead-letter stream %s not ensured yet: %s", self.recorder.spec.name, exc)
                await asyncio.sleep(backoff.next())

    async def stop(self) -> None:
        """Graceful drain: stop taking work, finish in-flight work, close."""
        if self.stopping.is_set():
            await self.stopped.wait()
            return
        self.stopping.set()
        log.info("%s draining", self.name)
        self._route_stop.set()
        route_tasks = [t for n, t in self.supervisor._tasks.items() if n.startswith("route:")]
        if route_tasks:
            await asyncio.wait(route_tasks, timeout=self.settings.drain_timeout)
        for hook in self._stop_hooks:
            try:
                await hook(self)
            except Exception:
                log.exception("stop hook failed")
        await self.supervisor.stop()
        await self.bus.close()
        self._http_stop.set()
        if self._http_task is not None:
            try:
                await asyncio.wait_for(self._http_task, 5)
            except Exception:
                pass
        self.stopped.set()
        log.info("%s stopped", self.name)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then drain."""
        loop = asyncio.get_running_loop()
        requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, requested.set)
        start = asyncio.create_task(self.start(), name="start")
        waiter = asyncio.create_task(requested.wait(), name="signals")
        await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if start.done() and start.exception() is not None:
            waiter.cancel()
            await self.stop()
            raise start.exception()  # type: ignore[misc]
        await waiter
        if not start.done():
            start.cancel()
            try:
                await start
            except (asyncio.CancelledError, Exception):
                pass
        await self.stop()


def main(build: Callable[[], Awaitable[Service[Any]]] | Callable[[], Service[Any]]) -> None:
    """Entry point helper for ``python -m services.<name>``."""

    async def _main() -> None:
        res = build()
        svc = await res if asyncio.iscoroutine(res) else res
        await svc.run()  # type: ignore[union-attr]

    try:
        run_loop(_main())
    except KeyboardInterrupt:
        pass


def run_loop(coro: Any) -> Any:
    """Run ``coro`` on uvloop when it is installed (markedly less CPU per message), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.run(coro)
    return uvloop.run(coro)
