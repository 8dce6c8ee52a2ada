"""Liveness, readiness and startup probes (exec, httpGet, tcpSocket) of running containers.

One task per (container, probe kind), started when the container runs and cancelled when
it stops. Timings as in Kubernetes: ``initialDelaySeconds``, ``periodSeconds`` (10),
``timeoutSeconds`` (1), ``successThreshold`` (1), ``failureThreshold`` (3). Readiness and
liveness wait for the startup probe to succeed. A result change wakes the pod's worker:
readiness changes the status, a liveness failure makes the worker restart the container.

Every pod shares the node's network namespace, so httpGet and tcpSocket probes connect
to ``host`` (default 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgebus.cri import CriClient, CriError

log = logging.getLogger("edgebus.edged.probes")

KINDS = ("startupProbe", "livenessProbe", "readinessProbe")


@dataclass
class Result:
    ok: bool | None = None  # None: not decided yet
    successes: int = 0
    failures: int = 0
    message: str = ""


@dataclass
class _Container:
    id: str
    spec: dict[str, Any]
    results: dict[str, Result] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _int(p: dict[str, Any], key: str, default: int, minimum: int = 0) -> int:
    v = p.get(key)
    return max(int(v), minimum) if isinstance(v, int) and not isinstance(v, bool) else default


def _port(spec: dict[str, Any], port: Any) -> int:
    if isinstance(port, int) and not isinstance(port, bool):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in spec.get("ports") or []:
        if isinstance(p, dict) and p.get("name") == port and isinstance(p.get("containerPort"), int):
            return int(p["containerPort"])
    raise ValueError(f"unknown port {port!r}")


async def run_probe(cri: CriClient, cid: str, spec: dict[str, Any], probe: dict[str, Any], host: str) -> tuple[bool, str]:
    """Run one probe once: (success, message)."""
    timeout = float(_int(probe, "timeoutSeconds", 1, 1))
    try:
        if isinstance(probe.get("exec"), dict):
            cmd = [str(x) for x in probe["exec"].get("command") or []]
            code, out, err = await cri.exec_sync(cid, cmd, timeout=timeout)
            return code == 0, f"exec {cmd} exited {code}: {(out + err).decode(errors='replace').strip()[:200]}"
        if isinstance(probe.get("httpGet"), dict):
            g = probe["httpGet"]
            scheme = str(g.get("scheme") or "HTTP").lower()
            url = f"{scheme}://{g.get('host') or host}:{_port(spec, g.get('port'))}{g.get('path') or '/'}"
            headers = {str(h.get("name")): str(h.get("value")) for h in g.get("httpHeaders") or [] if isinstance(h, dict)}
            import httpx  # only for pods with HTTP probes

            async with httpx.AsyncClient(timeout=timeout, verify=False) as client:
                r = await client.get(url, headers=headers)
            return 200 <= r.status_code < 400, f"HTTP probe {url}: {r.status_code}"
        if isinstance(probe.get("tcpSocket"), dict):
            t = probe["tcpSocket"]
            port = _port(spec, t.get("port"))
            _, w = await asyncio.wait_for(asyncio.open_connection(t.get("host") or host, port), timeout)
            w.close()
            return True, f"TCP probe {port}: connected"
        return False, "probe has no exec, httpGet or tcpSocket handler"
    except (CriError, OSError, TimeoutError, ValueError) as exc:
        return False, f"probe failed: {exc}"
    except Exception as exc:  # httpx.HTTPError (imported above, with the first HTTP probe)
        if type(exc).__module__.startswith("httpx"):
            return False, f"probe failed: {exc}"
        raise


class Prober:
    """The probes of one pod's running containers."""

    def __init__(self, cri: CriClient, wake: Callable[[], None], *, host: str = "127.0.0.1", on_failure: Callable[[str, str, str], None] | None = None) -> None:
        self.cri = cri
        self.wake = wake
        self.host = host
        #: ``(container name, probe kind, message)`` for every failed probe (the kubelet's
        #: ``Unhealthy`` event)
        self.on_failure = on_failure
        self._containers: dict[str, _Container] = {}

    def sync(self, running: list[tuple[str, dict[str, Any]]]) -> None:
        """Probe exactly these (container id, container spec) pairs."""
        want = {cid: spec for cid, spec in running}
        for cid in list(self._containers):
            if cid not in want:
                self._stop(cid)
        for cid, spec in want.items():
            if cid in self._containers or not any(isinstance(spec.get(k), dict) for k in KINDS):
                continue
            c = _Container(cid, spec)
            for kind in KINDS:
                if isinstance(spec.get(kind), dict):
                    c.results[kind] = Result()
                    c.tasks.append(asyncio.create_task(self._loop(c, kind, spec[kind]), name=f"probe:{kind}:{cid[:12]}"))
            self._containers[cid] = c

    def _stop(self, cid: str) -> None:
        c = self._containers.pop(cid, None)
        if c is not None:
            for t in c.tasks:
                t.cancel()

    async def close(self) -> None:
        tasks = [t for c in self._containers.values() for t in c.tasks]
        for cid in list(self._containers):
            self._stop(cid)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _result(self, cid: str, kind: str) -> Result | None:
        c = self._containers.get(cid)
        return None if c is None else c.results.get(kind)

    def started(self, cid: str) -> bool:
        r = self._result(cid, "startupProbe")
        return r is None or r.ok is True

    def ready(self, cid: str) -> bool:
        """Ready: started and the readiness probe (if any) succeeded."""
        if not self.started(cid):
            return False
        r = self._result(cid, "readinessProbe")
        return r is None or r.ok is True

    def liveness_failure(self, cid: str) -> str | None:
        """Why the container must be restarted (liveness or startup failed), or None."""
        for kind in ("livenessProbe", "startupProbe"):
            r = self._result(cid, kind)
            if r is not None and r.ok is False:
                return f"{kind[:-5]} probe failed: {r.message}"
        return None

    async def _loop(self, c: _Container, kind: str, probe: dict[str, Any]) -> None:
        res = c.results[kind]
        period = float(_int(probe, "periodSeconds", 10, 1))
        success_needed = _int(probe, "successThreshold", 1, 1)
        failures_allowed = _int(probe, "failureThreshold", 3, 1)
        try:
            await asyncio.sleep(float(_int(probe, "initialDelaySeconds", 0)))
            while True:
                if kind != "startupProbe" and not self.started(c.id):
                    await asyncio.sleep(min(period, 1.0))
                    continue
                ok, msg = await run_probe(self.cri, c.id, c.spec, probe, self.host)
                before = res.ok
                if ok:
                    res.successes += 1
                    res.failures = 0
                    if res.successes >= success_needed:
                        res.ok = True
                else:
                    res.failures += 1
                    res.successes = 0
                    res.message = msg
                    if self.on_failure is not None:
                        self.on_failure(str(c.spec.get("name") or ""), kind, msg)
                    if res.failures >= failures_allowed:
                        res.ok = False
                if res.ok != before:
                    log.info("container %s: %s %s (%s)", c.id[:12], kind, "succeeded" if res.ok else "failed", msg)
                    self.wake()
                if kind == "startupProbe" and res.ok is True:
                    return  # a startup probe stops once it succeeded
                if kind == "livenessProbe" and res.ok is False:
                    return  # the container is being restarted
                await asyncio.sleep(period)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("probe %s of %s crashed", kind, c.id[:12])
