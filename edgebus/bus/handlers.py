"""Handler registration: a handler is a typed async function with a declared delivery mode
and acknowledgement policy. Decoding, acknowledgement, rejection of invalid input,
metrics and dead-lettering happen here, in one place, never in the handler.

Delivery modes (nameko's vocabulary):

* ``BROADCAST`` - every instance of the service gets the message (core subscription);
* ``POOL``      - one instance gets it (core queue group named after the service);
* ``DURABLE``   - one instance gets it from a shared durable JetStream pull consumer, and
  it survives restarts (the only mode with acknowledgements).

Ack policies for ``DURABLE``:

* ``AFTER_HANDLER``  - ack once the handler returned (at-least-once; handlers are
  idempotent). :class:`RetryLater` or a crash redelivers; :class:`InvalidMessage` (or
  ``message.reject()``) dead-letters the message and then terminates it (only once the
  dead-letter copy is stored); a message whose handler failed ``max_attempts`` times is
  dead-lettered too, so a poison message never blocks a stream. Only real failures count:
  :class:`RetryLater` (a dependency down, a full disk) and redeliveries after an expired
  ack wait are retried without limit. Every message is settled on its own: when a batch
  handler fails, each message of the batch is run again alone.
* ``BEFORE_HANDLER`` - ack first (at-most-once), for telemetry that may be lost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Histogram

from edgebus import names
from edgebus.bus.connection import Bus, BusMsg, error_reply
from edgebus.bus.consumer import pull_loop
from edgebus.bus.deadletter import Recorder
from edgebus.bus.streams import DurableSpec
from edgebus.backoff import delay_for
from edgebus.envelope import Envelope
from edgebus.errors import ApiError, InvalidMessage, RetryLater
from edgebus.logctx import msg_ids

log = logging.getLogger("edgebus.handlers")

C = TypeVar("C")

MESSAGES = Counter(
    "edgebus_messages_total", "Messages handled, by route and outcome", ["service", "route", "outcome"]
)
HANDLER_SECONDS = Histogram(
    "edgebus_handler_seconds",
    "Handler latency by route",
    ["service", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class Delivery(enum.Enum):
    BROADCAST = "broadcast"
    POOL = "pool"
    DURABLE = "durable"


class Ack(enum.Enum):
    AFTER_HANDLER = "after-handler"
    BEFORE_HANDLER = "before-handler"


@dataclass(slots=True)
class Message:
    """What a handler receives: the decoded envelope plus transport facts."""

    env: Envelope
    raw: BusMsg
    rejected: str | None = None

    @property
    def subject(self) -> str:
        return self.raw.subject

    @property
    def headers(self) -> dict[str, str]:
        return self.raw.headers

    @property
    def seq(self) -> int:
        return self.raw.seq

    def reject(self, reason: str) -> None:
        """Mark this message invalid (batch handlers): it is recorded and never redelivered."""
        self.rejected = reason


Handler = Callable[[Message, C], Awaitable[Any]]
BatchHandler = Callable[[list[Message], C], Awaitable[None]]


@dataclass(slots=True)
class RouteSpec(Generic[C]):
    name: str
    subject: str
    fn: Callable[..., Awaitable[Any]]
    delivery: Delivery
    reply: bool = False
    ack: Ack = Ack.AFTER_HANDLER
    durable: DurableSpec | None = None
    batch: bool = False
    max_attempts: int = 5


@dataclass
class Router(Generic[C]):
    """The routes of one service, declared with decorators."""

    service: str
    routes: list[RouteSpec[C]] = field(default_factory=list)

    def on(self, subject: str, *, delivery: Delivery = Delivery.POOL, name: str | None = None) -> Callable[[Handler[C]], Handler[C]]:
        def deco(fn: Handler[C]) -> Handler[C]:
            self.routes.append(RouteSpec(name or fn.__name__, subject, fn, delivery))
            return fn

        return deco

    def reply(self, subject: str, *, delivery: Delivery = Delivery.POOL, name: str | None = None) -> Callable[[Handler[C]], Handler[C]]:
        """Request/reply: the handler's return value is the reply content."""

        def deco(fn: Handler[C]) -> Handler[C]:
            self.routes.append(RouteSpec(name or fn.__name__, subject, fn, delivery, reply=True))
            return fn

        return deco

    def durable(
        self, spec: DurableSpec, *, ack: Ack = Ack.AFTER_HANDLER, name: str | None = None, max_attempts: int = 5
    ) -> Callable[[Handler[C]], Handler[C]]:
        def deco(fn: Handler[C]) -> Handler[C]:
            self.routes.append(
                RouteSpec(name or fn.__name__, spec.filter_subject or spec.stream, fn, Delivery.DURABLE, ack=ack, durable=spec, max_attempts=max_attempts)
            )
            return fn

        return deco

    def durable_batch(
        self, spec: DurableSpec, *, name: str | None = None, max_attempts: int = 5
    ) -> Callable[[BatchHandler[C]], BatchHandler[C]]:
        """A handler that takes a whole fetched batch (e.g. to commit it in one transaction)."""

        def deco(fn: BatchHandler[C]) -> BatchHandler[C]:
            self.routes.append(
                RouteSpec(name or fn.__name__, spec.filter_subject or spec.stream, fn, Delivery.DURABLE, durable=spec, batch=True, max_attempts=max_attempts)
            )
            return fn

        return deco


async def serve(
    bus: Bus,
    route: RouteSpec[C],
    ctx: C,
    recorder: Recorder,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run one route until ``stop`` is set."""
    service = recorder.service
    if route.delivery is Delivery.DURABLE:
        assert route.durable is not None
        await pull_loop(bus, route.durable, _batch_runner(bus, route, ctx, recorder), stop=stop, on_ready=on_ready, expires=route.durable.expires)
        return

    queue = names.queue_group(service) if route.delivery is Delivery.POOL else None

    async def on_msg(msg: BusMsg) -> None:
        t0 = time.perf_counter()
        try:
            env = Envelope.decode(msg.data)
        except InvalidMessage as exc:
            MESSAGES.labels(service, route.name, "rejected").inc()
            await recorder.record(route.name, msg, str(exc))
            if route.reply:
                await msg.respond(error_reply(None, source=service, message=str(exc), code=400, reason="BadRequest").encode())
            return
        message = Message(env, msg)
        msg_ids.set((env.id, env.parent_id or "-"))
        try:
            result = await route.fn(message, ctx)
            if route.reply:
                await msg.respond(env.reply(source=service, content=result).encode())
            MESSAGES.labels(service, route.name, "ok").inc()
        except ApiError as exc:
            MESSAGES.labels(service, route.name, "error").inc()
            if route.reply:
                await msg.respond(error_reply(env, source=service, message=exc.message, code=exc.code, reason=exc.reason).encode())
        except InvalidMessage as exc:
            MESSAGES.labels(service, route.name, "rejected").inc()
            await recorder.record(route.name, msg, str(exc))
            if route.reply:
                await msg.respond(error_reply(env, source=service, message=str(exc), code=400, reason="BadRequest").encode())
        except Exception as exc:
            MESSAGES.labels(service, route.name, "failed").inc()
            log.exception("handler %s failed on %s", route.name, msg.subject)
            if route.reply:
                await msg.respond(error_reply(env, source=service, message=f"internal error: {exc}").encode())
        finally:
            HANDLER_SECONDS.labels(service, route.name).observe(time.perf_counter() - t0)

    # Core subscriptions are re-established by nats-py after reconnects.
    await bus.wait_connected()
    unsubscribe = await bus.subscribe(route.subject, on_msg, queue=queue)
    if on_ready is not None:
        on_ready()
    try:
        await stop.wait()
    finally:
        await unsubscribe()


class Failures:
    """How often a handler really failed on each message (by stream sequence).

    Redeliveries caused by :class:`RetryLater` or by an expired ack wait (a consumer that
    was gone, an outage) are not failures, so ``num_delivered`` is not used. The counts live
    in the process (bounded to the most recent ``limit`` messages): after a restart, or on
    another replica, a message gets ``max_attempts`` fresh tries."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._counts: OrderedDict[int, int] = OrderedDict()

    def add(self, seq: int) -> int:
        n = self._counts.pop(seq, 0) + 1
        self._counts[seq] = n
        while len(self._counts) > self.limit:
            self._counts.popitem(last=False)
        return n

    def clear(self, seq: int) -> None:
        self._counts.pop(seq, None)


def _batch_runner(bus: Bus, route: RouteSpec[C], ctx: C, recorder: Recorder) -> Callable[[list[BusMsg]], Awaitable[None]]:
    service = recorder.service
    failures = Failures()

    async def run(msgs: list[BusMsg]) -> None:
        good: list[Message] = []
        for m in msgs:
            try:
                good.append(Message(Envelope.decode(m.data), m))
            except InvalidMessage as exc:
                await _dead_letter(route, m, recorder, str(exc), acked=False)
        if not good:
            return
        t0 = time.perf_counter()
        if route.ack is Ack.BEFORE_HANDLER:
            for g in good:
                await g.raw.ack()
        if route.batch:
            await _run_batch(route, ctx, good, recorder, failures)
        else:
            for g in good:
                await _run_one(route, ctx, g, recorder, failures)
        HANDLER_SECONDS.labels(service, route.name).observe(time.perf_counter() - t0)

    return run


async def _dead_letter(route: RouteSpec[Any], m: BusMsg, recorder: Recorder, reason: str, *, acked: bool) -> None:
    """Store the dead-letter copy, then terminate the original - never before: when the
    copy cannot be stored, the original is kept (redelivered later, rejected again)."""
    MESSAGES.labels(recorder.service, route.name, "rejected").inc()
    stored = await recorder.record(route.name, m, reason)
    if acked:
        return
    if stored:
        await m.term()
    else:
        await m.nak(delay=5.0)


async def _settle(route: RouteSpec[Any], m: Message, recorder: Recorder, failures: Failures, exc: BaseException | None) -> None:
    service = recorder.service
    acked_before = route.ack is Ack.BEFORE_HANDLER
    if exc is None and m.rejected is None:
        MESSAGES.labels(service, route.name, "ok").inc()
        failures.clear(m.seq)
        if not acked_before:
            await m.raw.ack()
        return
    if m.rejected is not None or isinstance(exc, InvalidMessage):
        failures.clear(m.seq)
        await _dead_letter(route, m.raw, recorder, m.rejected or str(exc), acked=acked_before)
        return
    if isinstance(exc, RetryLater):
        MESSAGES.labels(service, route.name, "retried").inc()
        if not acked_before:
            await m.raw.nak(delay=exc.delay)
        return
    n = failures.add(m.seq)
    if n >= route.max_attempts:
        failures.clear(m.seq)
        await _dead_letter(route, m.raw, recorder, f"gave up after {n} failed attempts: {exc!r}", acked=acked_before)
        return
    MESSAGES.labels(service, route.name, "retried").inc()
    log.error("handler %s failed on %s (failure %d of %d): %r", route.name, m.subject, n, route.max_attempts, exc)
    if not acked_before:
        await m.raw.nak(delay=delay_for(n, 0.5, 30.0))


async def _run_one(route: RouteSpec[Any], ctx: Any, m: Message, recorder: Recorder, failures: Failures) -> None:
    msg_ids.set((m.env.id, m.env.parent_id or "-"))
    try:
        await route.fn(m, ctx)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await _settle(route, m, recorder, failures, exc)
        return
    await _settle(route, m, recorder, failures, None)


async def _run_batch(route: RouteSpec[Any], ctx: Any, good: list[Message], recorder: Recorder, failures: Failures) -> None:
    """Run a batch handler; when it fails (not :class:`RetryLater`), run it again on each
    message alone, so only the message that fails is retried or dead-lettered - one bad
    message never takes the rest of its batch with it."""
    try:
        await route.fn(good, ctx)
    except asyncio.CancelledError:
        raise
    except RetryLater as exc:
        for g in good:
            await _settle(route, g, recorder, failures, exc)
        return
    except Exception as exc:
        if len(good) == 1:
            await _settle(route, good[0], recorder, failures, exc)
            return
        log.warning("batch handler %s failed on a batch of %d (%r); running each message alone", route.name, len(good), exc)
        for g in good:
            g.rejected = None
            try:
                await route.fn([g], ctx)
            except asyncio.CancelledError:
                raise
            except Exception as one:
                await _settle(route, g, recorder, failures, one)
            else:
                await _settle(route, g, recorder, failures, None)
        return
    for g in good:
        await _settle(route, g, recorder, failures, None)
