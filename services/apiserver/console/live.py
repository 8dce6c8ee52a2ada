"""Feeds (the API collections a page shows) and the server-sent event stream that keeps a
page live: one list and one watch per feed, as the signed-in user; every change re-renders
the page's live fragment, at most once per ``min_interval`` (a burst of changes is one
push), and the browser swaps it in (htmx's SSE extension). Nothing in the browser polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from services.apiserver.console.userapi import ApiProblem, UserApi

log = logging.getLogger("edgebus.console")

#: how long a watch asks the server to run before it is renewed (from its last revision)
WATCH_SECONDS = 300
#: a stream waits at least this many times its last render's duration between two pushes
RENDER_SHARE = 10


@dataclass(frozen=True)
class Feed:
    key: str  # the name the page's renderer finds it under
    path: str  # the collection's API path
    query: tuple[tuple[str, str], ...] = ()


@dataclass
class FeedState:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    revision: str = ""
    problem: ApiProblem | None = None

    @property
    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())


Observer = Callable[[str, dict[str, Any]], None]


def object_key(obj: dict[str, Any]) -> str:
    m = obj.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def apply_event(state: FeedState, etype: str, obj: dict[str, Any]) -> bool:
    """Apply one watch event to a feed's objects; True when something changed."""
    rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    if rv:
        state.revision = rv
    if etype in ("ADDED", "MODIFIED"):
        state.objects[object_key(obj)] = obj
        return True
    if etype == "DELETED":
        return state.objects.pop(object_key(obj), None) is not None
    return False  # BOOKMARK, ERROR


async def load(api: UserApi, feed: Feed, observe: Observer | None = None) -> FeedState:
    """List a feed (a refusal or an unserved resource is kept as the feed's problem)."""
    st = FeedState()
    try:
        body = await api.get(feed.path, **dict(feed.query))
    except ApiProblem as exc:
        st.problem = exc
        return st
    for obj in body.get("items") or []:
        st.objects[object_key(obj)] = obj
        if observe is not None:
            observe(feed.key, obj)
    st.revision = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return st


async def load_all(api: UserApi, feeds: list[Feed], observe: Observer | None = None) -> dict[str, FeedState]:
    states = await asyncio.gather(*(load(api, f, observe) for f in feeds))
    return {f.key: s for f, s in zip(feeds, states, strict=True)}


async def follow(api: UserApi, feed: Feed, state: FeedState, changed: asyncio.Event, observe: Observer | None = None) -> None:
    """Keep ``state`` equal to the collection: watch from its revision, re-watch when the
    server ends a watch, re-list when the revision is too old (410)."""
    backoff = 0.5
    while state.problem is None:
        try:
            query = {**dict(feed.query), "timeoutSeconds": str(WATCH_SECONDS)}
            if state.revision:
                query["resourceVersion"] = state.revision
            async for etype, obj in api.watch(feed.path, query):
                backoff = 0.5
                if etype == "ERROR" and int(obj.get("code") or 0) == 410:
                    raise ApiProblem(410, str(obj.get("message") or "too old"))
                if apply_event(state, etype, obj):
                    if observe is not None:
                        observe(feed.key, obj)
                    changed.set()
        except ApiProblem as exc:
            if exc.code == 410:
                fresh = await load(api, feed, observe)
                state.objects, state.revision, state.problem = fresh.objects, fresh.revision, fresh.problem
                changed.set()
                continue
            if exc.code in (401, 403, 404):
                state.problem = exc
                changed.set()
                return
            log.info("watch %s: %s; again in %.1fs", feed.path, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


def sse_message(event: str, html: str) -> bytes:
    """One server-sent event whose data is an HTML fragment (each line a ``data:`` line)."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


async def stream(
    api: UserApi,
    feeds: list[Feed],
    render: Callable[[dict[str, FeedState]], str],
    event: str,
    stopping: asyncio.Event,
    *,
    observe: Observer | None = None,
    min_interval: float = 0.5,
    keepalive: float = 15.0,
) -> AsyncIterator[bytes]:
    """The page's live fragment: once at once, then after each change (coalesced). A
    fragment that fails to render is logged and skipped; the stream goes on."""

    cost = 0.0  # seconds the last render took

    def safe_render() -> bytes | None:
        nonlocal cost
        t = time.perf_counter()
        try:
            return sse_message(event, render(states))
        except Exception:
            log.exception("console: rendering %s failed", event)
            return None
        finally:
            cost = time.perf_counter() - t

    states = await load_all(api, feeds, observe)
    changed = asyncio.Event()
    tasks = [asyncio.create_task(follow(api, f, states[f.key], changed, observe), name=f"console-feed:{f.key}") for f in feeds]
    stop = asyncio.create_task(stopping.wait(), name="console-stopping")
    wake: asyncio.Task[bool] | None = None
    try:
        if (first := safe_render()) is not None:
            yield first
        while not stopping.is_set():
            wake = asyncio.create_task(changed.wait(), name="console-changed")
            done, _ = await asyncio.wait({wake, stop}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            if stop in done:
                return
            if not changed.is_set():
                yield b": keepalive\n\n"
                continue
            # let a burst of changes land, push once; a page that is costly to render (a
            # large fleet) is pushed less often, so one viewer takes at most ~1/RENDER_SHARE
            # of a core however busy the fleet is
            await asyncio.sleep(max(min_interval, cost * RENDER_SHARE))
            changed.clear()
            if (msg := safe_render()) is not None:
                yield msg
    finally:
        # a viewer that went away closes this generator inside the wait: its waiter too
        if wake is not None:
            wake.cancel()
        stop.cancel()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await api.aclose()
