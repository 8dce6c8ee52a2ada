"""Wiring shared by the workload controllers' services: settings, the objects bucket and the
leader lease (one replica reconciles, the others stand by)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service
from edgebus.workloads.controller import Controller

C = TypeVar("C", bound=Controller)


class ControllerSettings(BaseModel):
    kv_replicas: int = Field(1, description="Replicas of the objects KV bucket (3 in a NATS cluster).")
    lease_ttl: float = Field(6.0, description="Seconds a standby replica waits for a dead leader's lease to expire.")
    workers: int = Field(4, description="Primary objects reconciled at once.")


def build_controller(name: str, settings: Any, group: ControllerSettings, make: Callable[[ObjectStore], C]) -> Service[C]:
    """A service running controller ``make(store)`` while it holds the ``name`` lease."""
    svc: Service[C] = Service(name, settings)
    store = ObjectStore(svc.bus, replicas=group.kv_replicas)
    ctl = make(store)
    svc.ctx = ctl

    @svc.on_start
    async def ensure(_: Service[C]) -> None:
        await store.ensure()

    svc.lead(name, ctl.run, ttl=group.lease_ttl, synced=lambda: ctl.synced)
    return svc
