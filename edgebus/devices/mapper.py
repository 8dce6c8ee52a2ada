"""The mapper runtime: everything a protocol mapper does except talking to the device.

A mapper is a service on an edge node that speaks only KubeEdge's ``$hw`` topics (as NATS
subjects on the node's leaf server, exactly what an MQTT mapper sees on the MQTT listener):

* it asks ``$hw/events/node/{node}/membership/get`` for the node's devices (and again on
  ``membership/updated`` and every ``membership_interval``), and drives those whose
  ``spec.protocol.protocolName`` is its protocol;
* per device, one supervised worker connects through a :class:`Driver` (re-connecting with
  exponential back-off), reads every property each ``collectCycle`` and publishes
  ``twin/update`` at once when a value changed, and at least every ``reportCycle``;
* it writes desired values it gets on ``twin/update/delta`` (writable properties only),
  reads the property back and reports it, so the reported value follows;
* it publishes ``state/update``: ``online``, ``offline`` (cannot reach the device) or
  ``unhealthy`` (the device answers with errors or times out), with a reason.

A driver raises :class:`LinkDown` when the device is unreachable (the worker re-connects)
and :class:`DeviceFault` when one operation failed (the others go on; the last good value
of the property stays reported).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field

from edgebus import clock, names
from edgebus.bus import Backoff, Bus, BusError, BusMsg
from edgebus.devices import hw
from edgebus.devices import push as push_
from edgebus.errors import InvalidMessage
from edgebus.objects import devices as d
from edgebus.runtime import Service, ServiceSettings
from edgebus.objects.shapes import as_dict

log = logging.getLogger("edgebus.mapper")

READS = Counter("edgebus_mapper_reads_total", "Property reads", ["protocol", "outcome"])
WRITES = Counter("edgebus_mapper_writes_total", "Property writes", ["protocol", "outcome"])
REACTION = Histogram(
    "edgebus_mapper_rule_reaction_seconds",
    "From reading a value to issuing the write a local rule decided on",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)


class LinkDown(Exception):
    """The device cannot be reached: the worker closes the driver and re-connects."""


class DeviceFault(Exception):
    """The device answered an operation with an error (or did not answer in time)."""


@dataclass(frozen=True, slots=True)
class PropSpec:
    name: str
    prop: d.Prop
    config: dict[str, Any]
    collect_ms: int
    report_ms: int
    push: tuple[push_.Target, ...] = ()
    #: ``reportToCloud: false`` (given explicitly): the value is pushed, not reported as a twin
    report_to_cloud: bool = True

    @property
    def writable(self) -> bool:
        return self.prop.writable


@dataclass(frozen=True)
class DeviceConfig:
    namespace: str
    name: str
    protocol: dict[str, Any]
    props: dict[str, PropSpec]
    spec: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @classmethod
    def from_membership(cls, entry: dict[str, Any], *, default_collect_ms: int, default_report_ms: int) -> DeviceConfig:
        spec = entry.get("spec") or {}
        model_props = d.model_props({"spec": entry.get("model") or {}})
        props = {}
        for p in spec.get("properties") or []:
            if not isinstance(p, dict) or p.get("name") not in model_props:
                continue
            visitors = p.get("visitors") or {}
            cfg = visitors.get("configData") if isinstance(visitors, dict) else None
            targets, skipped = push_.targets(p.get("pushMethod"))
            if skipped:
                log.warning("device %s/%s property %s: pushMethod %s not supported, skipped", entry.get("namespace"), entry.get("name"), p["name"], ", ".join(skipped))
            props[p["name"]] = PropSpec(
                name=p["name"],
                prop=model_props[p["name"]],
                config=as_dict(cfg),
                collect_ms=int(p.get("collectCycle") or default_collect_ms),
                report_ms=int(p.get("reportCycle") or default_report_ms),
                push=tuple(targets),
                report_to_cloud=p.get("reportToCloud") is not False,
            )
        proto = (spec.get("protocol") or {}).get("configData") or {}
        return cls(str(entry.get("namespace") or "default"), str(entry.get("name")), as_dict(proto), props, spec)


class Driver(abc.ABC):
    """Talks to one device."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config

    @abc.abstractmethod
    async def connect(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def read(self, p: PropSpec) -> Any:
        """The property's current (typed) value."""

    @abc.abstractmethod
    async def write(self, p: PropSpec, value: Any) -> None:
        """Make the device hold ``value`` (typed, checked against the model)."""

    async def subscribe(self, props: list[PropSpec], on_value: Callable[[str, Any], None]) -> set[str]:
        """Push-capable drivers: deliver changes of ``props`` to ``on_value``; return the
        names now pushed (they are no longer polled). Default: none."""
        return set()


DriverFactory = Callable[[DeviceConfig], Driver]


class Worker:
    """Drives one device: connect, collect, report, write."""

    def __init__(self, mapper: Mapper, config: DeviceConfig) -> None:
        self.mapper = mapper
        self.config = config
        self.pending: dict[str, tuple[str, str]] = {}  # prop -> (desired value, trigger event id)
        self.written: dict[str, str] = {}  # prop -> last desired value written successfully
        self.reported: dict[str, str] = {}
        self.last_report: dict[str, float] = {}
        self.state: tuple[str, str] = ("", "")
        self.wake = asyncio.Event()
        self.recent_reads: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.pushed: set[str] = set()
        self.push_queue: dict[str, Any] = {}
        self.pushing: dict[tuple[str, push_.Target], asyncio.Task[bool]] = {}
        self.task: asyncio.Task[None] | None = None

    @property
    def protocol(self) -> str:
        return self.mapper.protocol

    def want(self, desired: dict[str, str], trigger: str = "") -> None:
        for k, v in desired.items():
            p = self.config.props.get(k)
            if p is None or not p.writable:
                log.warning("device %s/%s: ignoring desired %s=%s (not a writable property)", *self.config.key, k, v)
                continue
            self.pending[k] = (v, trigger)
        if self.pending:
            self.wake.set()

    def adopt_twin(self, twin: dict[str, Any]) -> None:
        """Desired values from a membership entry: write those not written yet."""
        for name, t in (twin or {}).items():
            exp = (t.get("expected") or {}).get("value") if isinstance(t, dict) else None
            act = (t.get("actual") or {}).get("value") if isinstance(t, dict) else None
            if exp is not None and exp != act and self.written.get(name) != exp and name not in self.pending:
                self.want({name: exp})

    async def run(self) -> None:
        backoff = Backoff(self.mapper.reconnect_min, self.mapper.reconnect_max)
        while True:
            driver = self.mapper.factory(self.config)
            try:
                await driver.connect()
                log.info("device %s/%s connected", *self.config.key)
                backoff.reset()
                self.pushed = await driver.subscribe(list(self.config.props.values()), self._on_push)
                await self._loop(driver)
            except asyncio.CancelledError:
                raise
            except (LinkDown, OSError, TimeoutError) as exc:
                await self._state("offline", str(exc) or type(exc).__name__)
            except Exception as exc:  # a driver bug must not kill the worker
                log.exception("device %s/%s: driver failed", *self.config.key)
                await self._state("offline", f"driver error: {exc!r}")
            finally:
                try:
                    await driver.close()
                except Exception:
                    pass
            await asyncio.sleep(backoff.next())

    def _on_push(self, name: str, value: Any) -> None:
        self.push_queue[name] = value
        self.wake.set()

    async def _loop(self, driver: Driver) -> None:
        # pushed properties are still read every reportCycle: a liveness check and a refresh
        due: dict[str, float] = {n: 0.0 if n not in self.pushed else time.monotonic() + self.config.props[n].report_ms / 1000 for n in self.config.props}
        faults: dict[str, str] = {}
        while True:
            now = time.monotonic()
            values: dict[str, str] = {}
            reads: list[str] = []
            if self.pending:
                await self._writes(driver, values, faults)
            if self.push_queue:
                pushed, self.push_queue = self.push_queue, {}
                for name, v in pushed.items():
                    p = self.config.props[name]
                    self._take(p, v, values, faults)
            for name, at in due.items():
                if at > now:
                    continue
                p = self.config.props[name]
                due[name] = now + (p.report_ms if name in self.pushed else p.collect_ms) / 1000
                await self._read(driver, p, values, faults)
                reads.append(name)
            await self._report(values, time.monotonic())
            if faults:
                await self._state("unhealthy", next(iter(faults.values())))
            else:
                await self._state("online", "")
            nxt = min(due.values(), default=now + 1.0)
            self.wake.clear()
            if self.pending or self.push_queue:
                continue
            await clock.wait_set(self.wake, max(nxt - time.monotonic(), 0.0))

    def _take(self, p: PropSpec, value: Any, values: dict[str, str], faults: dict[str, str]) -> None:
        try:
            values[p.name] = d.format_value(p.prop.type, d.parse_value(p.prop.type, value))
            faults.pop(p.name, None)
        except ValueError as exc:
            faults[p.name] = f"{p.name}: device value {value!r} is not a {p.prop.type}: {exc}"

    async def _read(self, driver: Driver, p: PropSpec, values: dict[str, str], faults: dict[str, str]) -> None:
        try:
            v = await driver.read(p)
        except DeviceFault as exc:
            READS.labels(self.protocol, "fault").inc()
            faults[p.name] = f"reading {p.name}: {exc}"
            return
        READS.labels(self.protocol, "ok").inc()
        self._take(p, v, values, faults)

    async def _writes(self, driver: Driver, values: dict[str, str], faults: dict[str, str]) -> None:
        pending, self.pending = self.pending, {}
        for name, (raw, trigger) in pending.items():
            p = self.config.props[name]
            try:
                v = p.prop.check(raw)
            except ValueError as exc:
                WRITES.labels(self.protocol, "invalid").inc()
                faults[name] = f"desired {name}={raw} rejected: {exc}"
                continue
            t_issue = time.perf_counter()
            read_at = self.recent_reads.get(trigger) if trigger else None
            if read_at is not None:
                self.mapper.record_reaction(t_issue - read_at)
            try:
                await driver.write(p, v)
            except DeviceFault as exc:
                WRITES.labels(self.protocol, "fault").inc()
                faults[name] = f"writing {name}={raw}: {exc}"
                if name not in self.pending:  # retried at the next cycle unless superseded
                    self.pending[name] = (raw, "")
                continue
            except ValueError as exc:
                WRITES.labels(self.protocol, "invalid").inc()
                faults[name] = f"writing {name}={raw}: {exc}"
                continue
            WRITES.labels(self.protocol, "ok").inc()
            self.written[name] = raw
            faults.pop(name, None)
            log.info("device %s/%s: wrote %s = %s", *self.config.key, name, raw)
            if name not in self.pushed:
                await self._read(driver, p, values, faults)

    async def _report(self, values: dict[str, str], now: float) -> None:
        out = {}
        for name, v in values.items():
            p = self.config.props[name]
            if v != self.reported.get(name) or now - self.last_report.get(name, 0.0) >= p.report_ms / 1000:
                out[name] = v
        if not out:
            return
        self._push(out)
        for k in [k for k in out if not self.config.props[k].report_to_cloud]:
            self.reported[k] = out.pop(k)
            self.last_report[k] = now
        if not out:
            return
        msg = hw.twin_update(out, types={k: self.config.props[k].prop.type for k in out})
        self.recent_reads[msg["event_id"]] = time.perf_counter()
        while len(self.recent_reads) > 1000:
            self.recent_reads.popitem(last=False)
        if await self.mapper.publish(names.hw_device_subject(self.config.namespace, self.config.name, names.HW_TWIN_UPDATE), msg):
            for k, v in out.items():
                self.reported[k] = v
                self.last_report[k] = now

    def _push(self, values: dict[str, str]) -> None:
        """``pushMethod`` targets get each value reported (a push still running for the same
        target is not doubled: the next report carries the newer value)."""
        ts = hw.now_ms()
        for name, v in values.items():
            for target in self.config.props[name].push:
                key = (name, target)
                running = self.pushing.get(key)
                if running is not None and not running.done():
                    continue
                self.pushing[key] = asyncio.create_task(self.mapper.pusher.push(target, self.config.key, name, v, ts), name=f"push:{name}:{target.method}")

    async def _state(self, state: str, reason: str) -> None:
        if self.state == (state, reason):
            return
        if await self.mapper.publish(names.hw_device_subject(self.config.namespace, self.config.name, names.HW_STATE_UPDATE), hw.state_update(state, reason)):
            self.state = (state, reason)
            if state != "online":
                log.warning("device %s/%s is %s: %s", *self.config.key, state, reason)


class Mapper:
    """The NATS side of a mapper; see the module docstring."""

    def __init__(
        self,
        bus: Bus,
        node: str,
        protocol: str,
        factory: DriverFactory,
        *,
        default_collect_ms: int = 1000,
        default_report_ms: int = 10_000,
        membership_interval: float = 30.0,
        reconnect_min: float = 0.2,
        reconnect_max: float = 10.0,
        redis_password: str = "",
    ) -> None:
        self.bus = bus
        self.node = node
        self.protocol = protocol
        self.factory = factory
        self.default_collect_ms = default_collect_ms
        self.default_report_ms = default_report_ms
        self.membership_interval = membership_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.workers: dict[tuple[str, str], Worker] = {}
        self.reactions: collections.deque[float] = collections.deque(maxlen=100_000)
        self.have_membership = False
        self._refresh = asyncio.Event()
        self.pusher = push_.Pusher(redis_password=redis_password)

    def record_reaction(self, seconds: float) -> None:
        self.reactions.append(seconds)
        REACTION.observe(seconds)

    async def publish(self, subject: str, body: dict[str, Any]) -> bool:
        try:
            await self.bus.publish(subject, hw.dumps(body))
            return True
        except BusError as exc:
            log.debug("publish %s failed: %s", subject, exc)
            return False

    # -- tasks ------------------------------------------------------------------------
    async def run(self) -> None:
        """Membership and deltas until cancelled; workers are children of this task."""
        await self.bus.wait_connected()
        subs = [
            await self.bus.subscribe(names.hw_node_subject(self.node, names.HW_MEMBERSHIP_RESULT), self._guard(self._on_membership)),
            await self.bus.subscribe(names.hw_node_subject(self.node, names.HW_MEMBERSHIP_UPDATED), self._guard(self._on_updated)),
            await self.bus.subscribe(names.hw_device_filter(names.HW_TWIN_DELTA), self._guard(self._on_delta)),
        ]
        try:
            while True:
                self._refresh.clear()
                await self.publish(names.hw_node_subject(self.node, names.HW_MEMBERSHIP_GET), hw.request())
                interval = self.membership_interval if self.have_membership else 1.0
                await clock.wait_set(self._refresh, interval)
        finally:
            for unsub in subs:
                await unsub()
            for w in list(self.workers.values()):
                await self._stop(w)
            await self.pusher.close()

    def _guard(self, fn: Callable[[BusMsg], Awaitable[None]]) -> Callable[[BusMsg], Awaitable[None]]:
        async def run(m: BusMsg) -> None:
            try:
                await fn(m)
            except InvalidMessage as exc:
                log.warning("ignoring message on %s: %s", m.subject, exc)
            except Exception:
                log.exception("handling %s failed", m.subject)

        return run

    async def _on_membership(self, m: BusMsg) -> None:
        msg = hw.loads(m.data)
        devices = msg.get("devices")
        if not isinstance(devices, list):
            raise InvalidMessage("membership result without a devices list")
        self.have_membership = True
        mine = {}
        for e in devices:
            if isinstance(e, dict) and e.get("protocol") == self.protocol:
                cfg = DeviceConfig.from_membership(e, default_collect_ms=self.default_collect_ms, default_report_ms=self.default_report_ms)
                mine[cfg.key] = (cfg, e.get("twin") or {})
        for key in [k for k in self.workers if k not in mine]:
            await self._stop(self.workers.pop(key))
            log.info("device %s/%s is no longer mapped", *key)
        for key, (cfg, twin) in mine.items():
            w = self.workers.get(key)
            if w is not None and w.config != cfg:
                await self._stop(self.workers.pop(key))
                w = None
            if w is None:
                w = Worker(self, cfg)
                w.task = asyncio.create_task(w.run(), name=f"mapper:{self.protocol}:{key[0]}/{key[1]}")
                self.workers[key] = w
                log.info("mapping device %s/%s (%d properties)", key[0], key[1], len(cfg.props))
            w.adopt_twin(twin)

    async def _on_updated(self, m: BusMsg) -> None:
        self._refresh.set()

    async def _on_delta(self, m: BusMsg) -> None:
        ns, name, _ = names.parse_hw_device_subject(m.subject)
        w = self.workers.get((ns, name))
        if w is None:
            return
        msg = hw.loads(m.data)
        delta = msg.get("delta")
        if not isinstance(delta, dict):
            raise InvalidMessage("delta without a 'delta' map")
        trigger = as_dict(msg.get("trigger"))
        w.want({str(k): str(v) for k, v in delta.items() if isinstance(v, (str, int, float, bool))}, str(trigger.get("event_id") or ""))

    async def _stop(self, w: Worker) -> None:
        for t in [w.task, *w.pushing.values()]:
            if t is None:
                continue
            t.cancel()
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass


class MapperSettings(BaseModel):
    """Settings every mapper shares (``EDGEBUS_MAPPER__*``)."""

    default_collect_ms: int = Field(1000, description="Read cycle of a property without collectCycle (ms).")
    default_report_ms: int = Field(10_000, description="Unchanged values are re-reported at least this often (ms).")
    membership_interval: float = Field(30.0, description="Seconds between membership refreshes (also on membership/updated).")
    request_timeout: float = Field(1.0, description="Seconds per device request when the device sets no timeout.")
    reconnect_max: float = Field(10.0, description="Longest back-off between re-connects (s).")
    redis_password: str = Field("", description="Password of the redis servers named by pushMethod.dbMethod.redis (KubeEdge's mappers read $PASSWORD).")


def mapper_service(
    name: str, settings: ServiceSettings, cfg: MapperSettings, protocol: str, make_driver: Callable[[DeviceConfig, float], Driver]
) -> Service[Mapper]:
    """A mapper process: one :class:`Mapper` for ``protocol`` as a supervised task."""
    if not settings.node:
        raise SystemExit(f"{name} needs EDGEBUS_NODE (the name of this edge node)")
    svc: Service[Mapper] = Service(name, settings)
    mapper = Mapper(
        svc.bus,
        settings.node,
        protocol,
        lambda config: make_driver(config, cfg.request_timeout),
        default_collect_ms=cfg.default_collect_ms,
        default_report_ms=cfg.default_report_ms,
        membership_interval=cfg.membership_interval,
        reconnect_max=cfg.reconnect_max,
        redis_password=cfg.redis_password,
    )
    svc.ctx = mapper
    svc.task("mapper", mapper.run)
    return svc
