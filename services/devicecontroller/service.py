"""devicecontroller: Device status from the edge (twins, state, lastOnlineTime) and rule
events as Kubernetes Events.

Its own durable consumer ``devicecontroller`` on ``EDGEBUS_UP``, filtered to
``edgebus.up.*.*.devices.>`` (cloudhub's consumer does not take these subjects), so every device message is handled by exactly one service.
Devices and their models travel down through edgecontroller like every other object.
"""

from __future__ import annotations

from edgebus import topology
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service, setup_logging
from services.devicecontroller.config import Settings
from services.devicecontroller.handlers import Ctx, build_router


def build(settings: Settings | None = None) -> Service[Ctx]:
    settings = settings or Settings()
    cfg = settings.devicecontroller
    svc: Service[Ctx] = Service("devicecontroller", settings, router=build_router(cfg.batch, cfg.ack_wait))
    store = ObjectStore(svc.bus, replicas=cfg.kv_replicas)
    svc.ctx = Ctx(store=store)

    @svc.on_start
    async def ensure(s: Service[Ctx]) -> None:
        await store.ensure()
        await topology.ensure_cloud_streams(s.bus, replicas=cfg.stream_replicas)

    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("devicecontroller", settings)
    run(lambda: build(settings))
