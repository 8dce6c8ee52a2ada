"""Consuming streams: durable pull loops and restartable ordered readers.

Both survive server restarts and reconnects: they re-create their consumer on a new
connection epoch and resume where they were (durables: from the server-side ack floor;
readers: from the last sequence they yielded + 1).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import nats.errors
import nats.js.errors
from nats.js import api

from edgebus import clock
from edgebus.backoff import Backoff
from edgebus.bus.connection import Bus, BusMsg
from edgebus.bus.streams import DurableSpec, ensure_consumer

log = logging.getLogger("edgebus.bus")
#: seconds between an idle reader's checks that its (ephemeral, single-replica) consumer
#: still exists (see :func:`read_stream`)
CONSUMER_CHECK = 3.0


BatchCallback = Callable[[list[BusMsg]], Awaitable[None]]


async def _wait_or_stop(aw: Awaitable[object], stop: asyncio.Event) -> tuple[bool, object]:
    """Await ``aw`` unless ``stop`` is set first; returns (completed, result)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()  # cancelled while waiting: the awaited work goes too
        raise
    finally:
        stopper.cancel()
    if task in done:
        return True, task.result()
    task.cancel()
    try:
        await task
    except BaseException:
        pass
    return False, None


async def fetch_ready(sub: Any, batch: int, timeout: float, *, pending: int = 0) -> list[Any]:
    """Up to ``batch`` messages from a pull subscription, returned as soon as one is there
    (raises a timeout when none came within ``timeout``).

    A fetch for more messages than the consumer holds can keep what it got until its
    request expires (the server holds the request open for the rest of the batch), so a
    message arriving at an idle consumer would wait up to ``timeout``. So this only asks
    for as many as are known to be there: ``pending`` (what the previous fetch left behind,
    see :func:`pending_after`), or one - waited for - and then the count pending behind it.
    A count that shrank meanwhile (another member of a shared consumer took some, or a
    newer message replaced one on its subject) costs at most 0.25 s."""
    if pending > 0:
        try:
            return list(await sub.fetch(min(batch, pending), timeout=min(timeout, 0.25)))
        except (nats.errors.TimeoutError, TimeoutError):
            pass
    msgs = list(await sub.fetch(1, timeout=timeout))
    clock.raise_lost_cancel()  # (nats-py's fetch waits with wait_for)
    behind = pending_after(msgs)
    if batch > 1 and behind:
        try:
            msgs += await sub.fetch(min(batch - 1, behind), timeout=min(timeout, 0.25))
        except (nats.errors.TimeoutError, TimeoutError):
            pass
    return msgs


def pending_after(msgs: list[Any]) -> int:
    """Messages the consumer still had pending when the last of ``msgs`` was delivered."""
    return int(msgs[-1].metadata.num_pending or 0) if msgs else 0


async def pull_loop(
    bus: Bus,
    spec: DurableSpec,
    on_batch: BatchCallback,
    *,
    stop: asyncio.Event,
    expires: float = 1.0,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Fetch batches from a durable consumer until ``stop`` is set.

    ``on_batch`` owns acknowledgement. An exception from it naks nothing: the messages are
    redelivered after the consumer's ``ack_wait``.
    """
    backoff = Backoff()
    sub = None
    sub_epoch = -1
    pending = 0
    try:
        while not stop.is_set():
            try:
                if sub is None or sub_epoch != bus.epoch:
                    if sub is not None:
                        await _unsub(sub)
                        sub = None
                    ok, _ = await _wait_or_stop(bus.wait_connected(), stop)
                    if not ok:
                        break
                    await ensure_consumer(bus, spec)
                    sub = await bus.js(spec.domain).pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
                    sub_epoch = bus.epoch
                    if on_ready is not None:
                        on_ready()
                ok, res = await _wait_or_stop(fetch_ready(sub, spec.batch, expires, pending=pending), stop)
                if not ok:
                    break
                msgs = cast(list[Any], res)
                pending = pending_after(msgs)
                await on_batch([BusMsg.from_nats(m, jetstream=True) for m in msgs])
                backoff.reset()
            except (nats.errors.TimeoutError, TimeoutError):
                pending = 0
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                pending = 0
                delay = backoff.next()
                log.warning("consumer %s/%s: %s; retrying in %.1fs", spec.stream, spec.durable, exc, delay)
                if sub is not None:
                    await _unsub(sub)
                    sub = None
                await asyncio.sleep(delay)
    finally:
        if sub is not None:
            await _unsub(sub)


async def _unsub(sub: object) -> None:
    try:
        await asyncio.wait_for(sub.unsubscribe(), 1.0)  # type: ignore[attr-defined]
    except Exception:
        pass


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Yielded once by :func:`read_stream` when it has read everything present at start."""

    last_seq: int


CAUGHT_UP_NONE = CaughtUp(0)


async def read_stream(
    bus: Bus,
    stream: str,
    subjects: str | Sequence[str],
    *,
    domain: str | None = None,
    start_seq: int | None = None,
    last_per_subject: bool = False,
    batch: int = 256,
    poll: float = 0.5,
    stop_when_caught_up: bool = False,
    headers_only: bool = False,
) -> AsyncGenerator[BusMsg | CaughtUp, None]:
    """Read a stream in order, forever (or until caught up), surviving server restarts.

    Start at ``start_seq`` (inclusive), or with the last message of every subject
    (``last_per_subject``), or with everything. After a reconnect the reader re-creates its
    (ephemeral) consumer from the last sequence it yielded + 1, so nothing is skipped and
    nothing is yielded twice.
    """
    filters = [subjects] if isinstance(subjects, str) else list(subjects)
    consumer: str | None = None
    last_seq = 0
    caught_up = False
    checked = 0.0
    backoff = Backoff()
    sub = None
    sub_epoch = -1
    pending = 0
    try:
        while True:
            clock.raise_lost_cancel()  # a consumer lookup's or fetch's reply that raced a cancel
            try:
                if sub is None or sub_epoch != bus.epoch:
                    if sub is not None:
                        await _unsub(sub)
                        sub = None
                    await bus.wait_connected()
                    js = bus.js(domain)
                    cfg = api.ConsumerConfig(
                        ack_policy=api.AckPolicy.NONE,
                        inactive_threshold=30.0,
                        mem_storage=True,
                        num_replicas=1,
                        headers_only=headers_only or None,
                    )
                    if len(filters) == 1:
                        cfg.filter_subject = filters[0]
                    else:
                        cfg.filter_subjects = filters
                    if last_seq:
                        cfg.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
                        cfg.opt_start_seq = last_seq + 1
                    elif start_seq:
                        cfg.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
                        cfg.opt_start_seq = start_seq
                    elif last_per_subject:
                        cfg.deliver_policy = api.DeliverPolicy.LAST_PER_SUBJECT
                    else:
                        cfg.deliver_policy = api.DeliverPolicy.ALL
                    name = secrets.token_hex(11)  # an ephemeral consumer's name, unique
                    cfg.name = name
                    info = await js.add_consumer(stream, cfg)
                    sub = await js.pull_subscribe_bind(consumer=name, stream=stream)
                    sub_epoch = bus.epoch
                    consumer = name
                    if not caught_up and (info.num_pending or 0) == 0:
                        caught_up = True
                        yield CaughtUp(last_seq)
                        if stop_when_caught_up:
                            return
                try:
                    msgs = await fetch_ready(sub, batch, poll, pending=pending)
                    pending = pending_after(msgs)
                except (nats.errors.TimeoutError, TimeoutError):
                    pending = 0
                    now = asyncio.get_running_loop().time()
                    if not caught_up:
                        info = await sub.consumer_info()
                        checked = now
                        if (info.num_pending or 0) == 0:
                            caught_up = True
                            yield CaughtUp(last_seq)
                            if stop_when_caught_up:
                                return
                    elif now - checked >= CONSUMER_CHECK:
                        # an idle reader asks now and then whether its consumer still exists:
                        # on a cluster it lives on one server, and when that server dies the
                        # connection (on another) stays up while the fetches just time out.
                        # Gone: the error below re-creates it after the last message yielded.
                        checked = now
                        await sub.consumer_info()
                    continue
                for m in msgs:
                    bm = BusMsg.from_nats(m, jetstream=True)
                    if bm.seq and bm.seq <= last_seq:
                        continue  # replay after a re-create: already yielded
                    last_seq = bm.seq or last_seq
                    yield bm
                    if not caught_up and bm.num_pending == 0:
                        caught_up = True
                        yield CaughtUp(last_seq)
                        if stop_when_caught_up:
                            return
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except GeneratorExit:
                raise
            except Exception as exc:
                pending = 0
                delay = backoff.next()
                log.info("reader on %s %s: %s; re-creating in %.1fs", stream, filters, exc, delay)
                if sub is not None:
                    await _unsub(sub)
                    sub = None
                await asyncio.sleep(delay)
    finally:
        if sub is not None:
            await _unsub(sub)
            # Delete the ephemeral consumer now rather than leaving it to expire after
            # ``inactive_threshold``: every object-store list and watch makes one.
            if consumer is not None:
                await _delete_consumer(bus, domain, stream, consumer)


async def _delete_consumer(bus: Bus, domain: str | None, stream: str, name: str) -> None:
    try:
        await asyncio.wait_for(bus.js(domain).delete_consumer(stream, name), 2.0)
    except Exception as exc:
        log.debug("deleting consumer %s on %s: %s", name, stream, exc)
