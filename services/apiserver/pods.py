"""Pod routes beyond the generic object routes.

* ``GET /api/v1/namespaces/{ns}/pods/{name}/log`` - the container log, fetched from the
  pod's node over NATS (request/reply to that node's edged, through its leaf link), so
  ``kubectl logs [-c C] [--tail N] [--timestamps] [--since 5m] [-p] [-f]`` works. The
  apiserver never talks to edged otherwise: only this NATS request.
* DeleteOptions: ``gracePeriodSeconds`` (body or query; 0 = remove at once, as
  ``kubectl delete --force --grace-period=0``) and ``preconditions.uid``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from edgebus.edgedclient import EdgedClient
from edgebus.errors import ApiError, BadRequest
from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore

log = logging.getLogger("edgebus.apiserver")


def _int_param(v: Any, what: str) -> int | None:
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
    return n


def delete_options(opts: dict[str, Any] | None, query: dict[str, str]) -> tuple[str | None, int | None, str | None]:
    """(resourceVersion precondition, grace period seconds, uid precondition)."""
    opts = opts or {}
    pre = opts.get("preconditions") if isinstance(opts.get("preconditions"), dict) else {}
    rv = str(pre["resourceVersion"]) if pre.get("resourceVersion") else None
    uid = str(pre["uid"]) if pre.get("uid") else None
    grace = _int_param(opts.get("gracePeriodSeconds"), "gracePeriodSeconds")
    if grace is None:
        grace = _int_param(query.get("gracePeriodSeconds"), "gracePeriodSeconds")
    return rv, grace, uid


def _bool(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes")


def _since(q: dict[str, str]) -> int | None:
    s = _int_param(q.get("sinceSeconds"), "sinceSeconds")
    if s is not None:
        return s
    if q.get("sinceTime"):
        import datetime as dt

        try:
            t = dt.datetime.fromisoformat(q["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest("sinceTime must be an RFC 3339 time") from None
        return max(int(dt.datetime.now(dt.UTC).timestamp() - t.timestamp()), 0)
    return None


def add_routes(app: FastAPI, store: ObjectStore) -> None:
    @app.get("/api/v1/namespaces/{namespace}/pods/{name}/log")
    async def pod_log(namespace: str, name: str, request: Request) -> Response:
        q = dict(request.query_params)
        pod = await store.get(PODS, namespace, name)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise BadRequest(f'pod "{name}" is not scheduled to a node yet')
        client = EdgedClient(store.bus, node, source="apiserver")
        kwargs: dict[str, Any] = {
            "container": q.get("container") or None,
            "tail": _int_param(q.get("tailLines"), "tailLines"),
            "previous": _bool(q.get("previous")),
            "timestamps": _bool(q.get("timestamps")),
            "since_seconds": _since(q),
            "limit_bytes": _int_param(q.get("limitBytes"), "limitBytes"),
        }
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
