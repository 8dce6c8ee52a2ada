"""edgehub's request/reply: ``edgebus.node.<node>.edgehub.state``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from edgebus import names
from edgebus.bus import Bus, Message, NoResponders, RequestTimeout, StreamState, stream_state
from services.edgehub.context import Ctx


async def _local_stream(bus: Bus, stream: str) -> StreamState:
    """The node's own stream, read again for a moment when its JetStream is busy (a reload, a burst)."""
    for attempt in range(4):
        try:
            return await stream_state(bus, stream)
        except (NoResponders, RequestTimeout):
            if attempt == 3:
                raise
            await asyncio.sleep(0.25 * (attempt + 1))
    raise AssertionError("unreachable")


async def state(m: Message, ctx: Ctx) -> dict[str, Any]:
    """The link, the outbox and its forwarding, the downstream, the link certificate."""
    assert ctx.downstream is not None
    local = await _local_stream(ctx.bus, names.STREAM_EDGE_UP)
    down = await _local_stream(ctx.bus, names.STREAM_EDGE_DOWN)
    ds, dst = ctx.downstream.state, ctx.downstream.spec
    credentials = ctx.credentials
    return {
        "node": ctx.node,
        "link": "up" if ctx.link.up else "down",
        "linkSince": ctx.link.since,
        "joined": ctx.joined,
        "lastHeartbeat": ctx.last_heartbeat,
        "outbox": {"lastSeq": local.last_seq, "messages": local.messages, "forwardedSeq": ctx.cloud_seq, "backlog": max(local.last_seq - ctx.cloud_seq, 0)},
        "downstream": {
            "messages": down.messages,
            "lastSeq": down.last_seq,
            # the cloud's side, as the last pull saw it (no request to the cloud here)
            "sources": [{"name": names.STREAM_DOWN, "consumer": dst.durable, "lag": ds.pending, "activeMs": int((time.time() - ds.last_answer) * 1000) if ds.last_answer else -1, "error": ds.error}],
            "pulled": ds.pulled,
            "duplicates": ds.duplicates,
            "consumerCreates": ds.creates,
        },
        "forwarded": ctx.forwarded,
        "credential": (
            {"linkNotAfter": credentials.state.not_after, "renewed": credentials.state.renewed, "lastError": credentials.state.last_error}
            if credentials
            else None
        ),
    }
