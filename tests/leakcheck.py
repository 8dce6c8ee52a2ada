"""The autouse fixture of the unit and integration tiers that fails a test leaking asyncio
tasks (imported by their conftests; the logic is edgebus.testing.leaks)."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator

import pytest

from edgebus.testing.leaks import cancel_all, describe, leaked_tasks


@pytest.fixture(autouse=True)
async def _no_leaked_tasks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running after its teardown (edgebus.testing.leaks)."""
    before = asyncio.all_tasks()
    yield
    # services under test stop within their drain timeouts; a loaded machine gets more grace
    leaked = await leaked_tasks(before, grace=5.0 if "/integration/" in str(request.node.path) else 2.0)
    if leaked:
        text = describe(leaked)
        await cancel_all(leaked)
        known = request.node.get_closest_marker("leaks_tasks")
        if known is None:
            pytest.fail(f"{request.node.nodeid} leaked {len(leaked)} asyncio task(s):\n{text}", pytrace=False)
        warnings.warn(f"{request.node.nodeid} leaked {len(leaked)} asyncio task(s) (known: {known.args[0]}):\n{text}", stacklevel=1)
