"""Helpers for the workload controllers' integration tests: the controllers in-process on a
real hub, and a stand-in for the node that reports pod status (as edged would)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore
from edgebus.testing.services import build_service
from edgebus.testing.servers import Hub


def stamp(t: dt.datetime | None = None) -> str:
    return (t or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


@asynccontextmanager
async def controllers(hub: Hub, *names: str, **groups: dict[str, Any]) -> AsyncIterator[ObjectStore]:
    svcs = [build_service(n, nats=hub.nats_settings(n), **{n: {"lease_ttl": 2.0, **groups.get(n, {})}}) for n in names]
    bus = hub.bus("test")
    await bus.connect(retry_for=10)
    store = ObjectStore(bus)
    await store.ensure()
    await store.ensure_system_namespaces()
    for s in svcs:
        await s.start()
    try:
        yield store
    finally:
        for s in reversed(svcs):
            await s.stop()
        await bus.close()


async def set_pod_status(store: ObjectStore, ns: str, name: str, phase: str, *, ready: bool = False, ready_since: dt.datetime | None = None, restarts: int = 0) -> None:
    """Report a pod's status as its node would."""

    def put(p: dict[str, Any]) -> dict[str, Any]:
        t = stamp(ready_since)
        p["status"] = {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": t}],
            "containerStatuses": [{"name": c.get("name"), "ready": ready, "restartCount": restarts} for c in p["spec"].get("containers", [])],
            "podIP": "127.0.0.1",
        }
        return p

    await store.mutate(PODS, ns, name, put)


async def pods_of(store: ObjectStore, ns: str, owner_uid: str, *, active: bool = True) -> list[dict[str, Any]]:
    items, _ = await store.list(PODS, ns)
    out = []
    for p in items:
        refs = p["metadata"].get("ownerReferences") or []
        if any(r.get("uid") == owner_uid and r.get("controller") for r in refs):
            if active and (p["metadata"].get("deletionTimestamp") or p.get("status", {}).get("phase") in ("Succeeded", "Failed")):
                continue
            out.append(p)
    return out


async def finish_terminating(store: ObjectStore, ns: str = "default") -> None:
    """Confirm the end of terminating pods, as their node does once the containers are gone."""
    items, _ = await store.list(PODS, ns)
    for p in items:
        if p["metadata"].get("deletionTimestamp"):
            try:
                await store.delete(PODS, ns, p["metadata"]["name"], grace_period_seconds=0)
            except Exception:  # noqa: BLE001 - gone already
                pass


async def edit(store: ObjectStore, resource: Any, ns: str | None, name: str, fn: Any) -> dict[str, Any]:
    """A user's read-modify-write (``kubectl edit``): retried when a controller wrote in between."""
    from edgebus.errors import Conflict

    for _ in range(50):
        cur = await store.get(resource, ns, name)
        fn(cur)
        try:
            return await store.update(resource, cur)
        except Conflict:
            continue
    raise AssertionError(f"{name} kept changing")
