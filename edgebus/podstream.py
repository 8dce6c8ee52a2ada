"""What the pod streaming routes (:mod:`edgebus.podexec`, :mod:`edgebus.podportforward`)
share, on the cloud apiserver and on each node's metaserver alike: how the route reaches
the pod's node (a :data:`Locate`), which protocol kubectl offered (a websocket subprotocol,
or a SPDY/3.1 upgrade handed over by :mod:`edgebus.runtime.spdyupgrade`), and how a refused
upgrade is answered (a plain HTTP ``Status``, which kubectl prints as ``Error from server``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from edgebus.edgedclient import EdgedClient
from edgebus.errors import ApiError
from edgebus.runtime.spdyupgrade import SPDY_EXTENSION

#: the client of the edged that runs pod ``(namespace, name)`` (an ``ApiError`` when there is none)
Locate = Callable[[str, str], Awaitable[EdgedClient]]


def spdy_offer(ws: WebSocket) -> list[str] | None:
    """The protocols of a SPDY/3.1 upgrade (``X-Stream-Protocol-Version``), ``None`` for a websocket."""
    offer = (ws.scope.get("extensions") or {}).get(SPDY_EXTENSION)
    return None if offer is None else list(offer.get("protocols") or [])


def subprotocols(ws: WebSocket) -> list[str]:
    """The websocket subprotocols kubectl offered."""
    return [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


async def deny(ws: WebSocket, exc: ApiError) -> None:
    """Refuse the upgrade with the error's ``Status`` (a close when the server cannot answer HTTP)."""
    try:
        await ws.send_denial_response(JSONResponse(exc.status(), status_code=exc.code))
    except Exception:
        await ws.close(code=1008, reason=exc.message[:120])
