"""One service inside the all-in-one process, kept running by itself.

A member builds its service (``services.<name>.service.build``, settings read under the
member's own environment prefix), starts it, and watches it. It is started anew - a fresh
:class:`~edgebus.runtime.Service`, so a fresh NATS connection and a freshly opened LMDB
environment - when building or starting it fails, or when it stays unhealthy (a supervised
task crash-looping) for ``unhealthy_grace`` seconds; with back-off, and without touching
the other members.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import time
from typing import Any

from prometheus_client import Counter

from edgebus import clock
from edgebus.bus import Backoff
from edgebus.logctx import service_name
from edgebus.runtime import Service
from edgebus.allinone.settings import AllInOneGroup, member_prefix

log = logging.getLogger("edgebus.allinone")

MEMBER_RESTARTS = Counter("edgebus_allinone_restarts_total", "Services of the all-in-one process started anew after a failure", ["service"])

STOPPED, STARTING, RUNNING, BACKOFF = "stopped", "starting", "running", "backoff"


def build_member(name: str) -> Service[Any]:
    """Import ``services.<name>`` (only now: a service's heavy imports come with it) and build
    it from its own settings."""
    config = importlib.import_module(f"services.{name}.config")
    service = importlib.import_module(f"services.{name}.service")
    svc: Service[Any] = service.build(config.Settings(_env_prefix=member_prefix(name)))
    return svc


class Member:
    def __init__(self, name: str, cfg: AllInOneGroup, *, on_demand: bool = False) -> None:
        self.name = name
        self.cfg = cfg
        self.on_demand = on_demand
        self.svc: Service[Any] | None = None
        self.state = STOPPED
        self.restarts = 0
        self.last_error: str | None = None
        self.started_at = 0.0
        self.wanted = False
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # -- control ------------------------------------------------------------------------
    def want(self, wanted: bool) -> None:
        self.wanted = wanted
        if wanted:
            self._stop.clear()
            if self._task is None or self._task.done():
                ctx = contextvars.copy_context()
                ctx.run(service_name.set, self.name)  # log lines of its tasks name it
                self._task = asyncio.create_task(self._keep(), name=f"member:{self.name}", context=ctx)
        else:
            self._stop.set()

    async def stop(self) -> None:
        self.want(False)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # -- state --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        svc = self.svc
        ok = (not self.wanted) or (self.state == RUNNING and svc is not None and bool(svc.health()["ok"]))
        out: dict[str, Any] = {"ok": ok, "state": self.state, "wanted": self.wanted, "restarts": self.restarts, "last_error": self.last_error}
        if svc is not None:
            out["tasks"] = svc.health()["tasks"]
        return out

    def ready(self) -> dict[str, Any]:
        svc = self.svc
        if not self.wanted:
            return {"ok": True, "state": self.state}
        if svc is None or self.state != RUNNING:
            return {"ok": False, "state": self.state, "last_error": self.last_error}
        r = svc.ready()
        return {"ok": bool(r["ok"]), "state": self.state, "checks": r["checks"]}

    # -- the loop -----------------------------------------------------------------------
    async def _keep(self) -> None:
        backoff = Backoff(0.5, self.cfg.restart_max)
        while self.wanted:
            failure = await self._run_once()
            if failure is None:
                return
            self.restarts += 1
            self.last_error = failure
            MEMBER_RESTARTS.labels(self.name).inc()
            if time.monotonic() - self.started_at > 300:
                backoff.reset()  # it ran well for a while: this is a new failure
            delay = backoff.next()
            log.warning("service %s failed (%s); starting it anew in %.1fs (restart %d)", self.name, failure, delay, self.restarts)
            self.state = BACKOFF
            await clock.wait_set(self._stop, delay)
        self.state = STOPPED

    async def _run_once(self) -> str | None:
        """Build, start and watch the service once; the failure that ended it (None: it was
        stopped on request)."""
        self.state = STARTING
        self.started_at = time.monotonic()
        try:
            svc = build_member(self.name)
        except (Exception, SystemExit) as exc:
            log.exception("service %s could not be built", self.name)
            return f"build: {exc!r}"
        self.svc = svc
        try:
            failure = await self._start_and_watch(svc)
        finally:
            try:
                await asyncio.wait_for(svc.stop(), self.cfg.stop_timeout)
            except (Exception, asyncio.TimeoutError) as exc:
                log.warning("service %s did not stop cleanly: %r", self.name, exc)
            self.svc = None
            self.state = STOPPED
        return failure

    async def _start_and_watch(self, svc: Service[Any]) -> str | None:
        start = asyncio.create_task(svc.start(), name=f"start:{self.name}")
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not start.done():
                start.cancel()
                await asyncio.gather(start, return_exceptions=True)
                return None
            if start.exception() is not None:
                log.error("service %s failed to start: %r", self.name, start.exception())
                return f"start: {start.exception()!r}"
        finally:
            stop.cancel()
        self.state = RUNNING
        log.info("service %s running", self.name)
        unhealthy_since: float | None = None
        while not self._stop.is_set():
            if svc.stopped.is_set():
                return "stopped by itself"
            if svc.health()["ok"]:
                unhealthy_since = None
            else:
                unhealthy_since = unhealthy_since or time.monotonic()
                if time.monotonic() - unhealthy_since >= self.cfg.unhealthy_grace:
                    return "unhealthy: " + ", ".join(f"{n}: {s['last_error']}" for n, s in svc.health()["tasks"].items() if s["last_error"])
            if unhealthy_since is None:
                await self._quiet(svc)
            else:  # unhealthy: look every second until it recovers or its grace is over
                await clock.wait_set(self._stop, 1.0)
        return None

    async def _quiet(self, svc: Service[Any]) -> None:
        """While the service is healthy, only a crash of one of its tasks or its stop can
        change that: wait for one of those (events; an idle node is not woken every second)."""
        svc.supervisor.crashed.clear()
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stop, svc.stopped, svc.supervisor.crashed)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
