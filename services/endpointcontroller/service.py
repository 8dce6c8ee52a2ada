"""endpointcontroller: keeps every Service's Endpoints equal to its ready pods.

The wiring: the object store at start, and the reconcile loop
(:class:`services.endpointcontroller.controller.Controller`) run by the holder of the
``endpointcontroller`` lease.
"""

from __future__ import annotations

from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service, setup_logging
from services.endpointcontroller.config import Settings
from services.endpointcontroller.controller import Controller


def build(settings: Settings | None = None) -> Service[Controller]:
    settings = settings or Settings()
    svc: Service[Controller] = Service("endpointcontroller", settings)
    store = ObjectStore(svc.bus, replicas=settings.endpointcontroller.kv_replicas)
    ctl = Controller(store)
    svc.ctx = ctl

    @svc.on_start
    async def ensure(s: Service[Controller]) -> None:
        await store.ensure()

    svc.lead("endpointcontroller", ctl.run, ttl=settings.endpointcontroller.lease_ttl, synced=lambda: ctl.synced)
    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("endpointcontroller", settings)
    run(lambda: build(settings))
