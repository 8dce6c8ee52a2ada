"""``kubectl logs``: the pod log route's answer, shared by the cloud apiserver and each node's
metaserver (both ask the pod's node's edged over NATS: the apiserver through the node's leaf
link, the metaserver on the node's own server, so that works offline).

``GET .../pods/{name}/log`` with ``container``, ``tailLines``, ``previous``, ``timestamps``,
``sinceSeconds`` / ``sinceTime``, ``limitBytes`` and ``follow`` (a streamed answer that ends
with the container).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

from starlette.responses import Response, StreamingResponse

from edgebus import kube
from edgebus.edgedclient import EdgedClient
from edgebus.errors import ApiError, BadRequest

log = logging.getLogger("edgebus.podlogs")


def int_param(v: Any, what: str) -> int | None:
    """A non-negative 64-bit integer parameter (``None`` when absent), else ``400``."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise BadRequest(f"{what} must be an integer")
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise BadRequest(f"{what} must be an integer") from None
    if n < 0:
        raise BadRequest(f"{what} must not be negative")
    if n > kube.INT64_MAX:
        raise BadRequest(f"{what} must be a 64-bit integer")
    return n


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes")


def _since(q: Mapping[str, str]) -> int | None:
    s = int_param(q.get("sinceSeconds"), "sinceSeconds")
    if s is not None:
        return s
    if q.get("sinceTime"):
        try:
            t = dt.datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest("sinceTime must be an RFC 3339 time") from None
        return max(int(dt.datetime.now(dt.UTC).timestamp() - t.timestamp()), 0)
    return None


def log_options(q: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of :meth:`EdgedClient.logs` from the route's query (checked)."""
    return {
        "container": q.get("container") or None,
        "tail": int_param(q.get("tailLines"), "tailLines"),
        "previous": _bool(q.get("previous")),
        "timestamps": _bool(q.get("timestamps")),
        "since_seconds": _since(q),
        "limit_bytes": int_param(q.get("limitBytes"), "limitBytes"),
    }


async def log_response(client: EdgedClient, namespace: str, name: str, q: Mapping[str, str]) -> Response:
    """The answer to a pod log request: the log, or with ``follow`` a stream of it."""
    kwargs = log_options(q)
    if not _bool(q.get("follow")):
        chunks = []
        async with aclosing(client.logs(namespace, name, **kwargs)) as it:
            async for c in it:
                chunks.append(c)
        return Response(b"".join(chunks), media_type="text/plain")
    # follow: the first chunk is fetched before answering, so errors get a Status body
    it = client.logs(namespace, name, follow=True, **kwargs)
    try:
        first = await it.__anext__()
    except StopAsyncIteration:
        first = b""

    async def body() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for c in it:
                yield c
        except ApiError as exc:
            log.info("log stream of %s/%s ended: %s", namespace, name, exc.message)
        finally:
            await it.aclose()

    return StreamingResponse(body(), media_type="text/plain")
