"""devicetwin's local request/reply API (``edgebus.node.<node>.devicetwin.{twins,events}``,
pool): the twins, and the local rule-event log."""

from __future__ import annotations

from typing import Any

from edgebus.bus import Message
from services.devicetwin import shapes
from services.devicetwin.state import TwinState


async def twins(m: Message, st: TwinState) -> dict[str, Any]:
    return shapes.twins_view(st.node, st.twins, st.infos, st.firings)


async def events(m: Message, st: TwinState) -> dict[str, Any]:
    c = m.env.content if isinstance(m.env.content, dict) else {}
    limit = c.get("limit", 1000)
    return {"events": st.store.recent_events(limit if isinstance(limit, int) and limit > 0 else 1000), "pending": len(st.store.pending_events(10_000))}
