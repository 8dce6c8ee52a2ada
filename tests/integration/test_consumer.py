"""Pull fetches against a real nats-server: prompt delivery to an idle consumer, batches."""

from __future__ import annotations

import asyncio
import random
import time

import nats.errors
import pytest
from nats.js import api

from edgebus.bus import Bus
from edgebus.bus.consumer import fetch_ready


async def _consumer(bus: Bus, stream: str):  # type: ignore[no-untyped-def]
    js = bus.js()
    await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
    await js.add_consumer(stream, api.ConsumerConfig(durable_name="d", ack_policy=api.AckPolicy.EXPLICIT))
    return await js.pull_subscribe_bind(durable="d", stream=stream)


async def test_idle_consumer_gets_a_message_as_soon_as_it_is_stored(bus: Bus, hub) -> None:  # type: ignore[no-untyped-def]
    """A message published while the reader waits in a long fetch is returned at once,
    not when the fetch's request expires - also after fetches that ended idle."""
    sub = await _consumer(bus, "FETCHA")
    pub = hub.bus("publisher")
    await pub.connect(retry_for=5)
    delays: list[float] = []
    try:
        for i in range(8):
            sent = 0.0

            async def publish_later(i: int = i) -> None:
                nonlocal sent
                await asyncio.sleep(random.uniform(0.05, 0.6))
                sent = time.perf_counter()
                await pub.js_publish("fetcha.x", str(i).encode(), stream="FETCHA")

            task = asyncio.create_task(publish_later())
            while True:
                try:
                    msgs = await fetch_ready(sub, 100, 0.3)  # idle fetches end in between
                    break
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
            delays.append(time.perf_counter() - sent)
            await task
            assert [m.data for m in msgs] == [str(i).encode()]
            for m in msgs:
                await m.ack()
    finally:
        await pub.close()
        await sub.unsubscribe()
    assert max(delays) < 0.15, f"delivery delays (s): {delays}"


async def test_fetch_ready_takes_what_is_pending_in_one_call(bus: Bus) -> None:
    sub = await _consumer(bus, "FETCHB")
    for i in range(50):
        await bus.js_publish(f"fetchb.{i % 5}", str(i).encode(), stream="FETCHB")
    t0 = time.perf_counter()
    msgs = await fetch_ready(sub, 40, 2.0)
    assert [m.data for m in msgs] == [str(i).encode() for i in range(40)]
    msgs = await fetch_ready(sub, 40, 2.0, pending=10)  # what the previous fetch left
    assert [m.data for m in msgs] == [str(i).encode() for i in range(40, 50)]
    assert time.perf_counter() - t0 < 1.0, "no call waited for its request to expire"
    with pytest.raises((nats.errors.TimeoutError, TimeoutError)):
        await fetch_ready(sub, 40, 0.2)
    await sub.unsubscribe()
