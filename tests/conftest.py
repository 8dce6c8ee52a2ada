from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edgebus.bus import Bus
from edgebus.testing.servers import Cluster, Hub, start_hub


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
    b = hub.bus("test", request_timeout=3)
    await b.connect(retry_for=10)
    try:
        yield b
    finally:
        await b.close()
