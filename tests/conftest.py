from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edgebus.bus import Bus
from edgebus.testing.servers import Cluster, Hub, start_hub, start_leaf


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    h = start_hub(tmp_path)
    try:
        yield h
    finally:
        h.server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cloud hub; tests add leaves with ``cluster.leaves[n] = start_leaf(...)``."""
    h = start_hub(tmp_path)
    c = Cluster(tmp_path, h)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def bus(hub: Hub) -> AsyncIterator[Bus]:
    b = Bus(hub.url, name="test", request_timeout=3)
    await b.connect(retry_for=10)
    try:
        yield b
    finally:
        await b.close()


async def eventually(fn, *, timeout: float = 10.0, interval: float = 0.05, msg: str = "condition"):
    """Await until ``fn()`` (sync or async) returns a truthy value; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        res = fn()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return res
        last = res
        await asyncio.sleep(interval)
    raise AssertionError(f"{msg} not reached within {timeout}s (last: {last!r})")


__all__ = ["eventually", "start_leaf"]
