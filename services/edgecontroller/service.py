"""edgecontroller: routes each node's desired state onto its downstream subjects.

The wiring: the object store and the cloud streams at start, and the routing loop
(:class:`services.edgecontroller.controller.Controller`) run by the holder of the
``edgecontroller`` lease, fenced in ``EDGEBUS_DOWN``.
"""

from __future__ import annotations

from edgebus import names, topology
from edgebus.objectstore import ObjectStore
from edgebus.runtime import Service, setup_logging
from services.edgecontroller.config import Settings
from services.edgecontroller.controller import Controller


def build(settings: Settings | None = None) -> Service[Controller]:
    settings = settings or Settings()
    svc: Service[Controller] = Service("edgecontroller", settings)
    store = ObjectStore(svc.bus, replicas=settings.edgecontroller.kv_replicas)
    ctl = Controller(svc.bus, store)
    svc.ctx = ctl

    @svc.on_start
    async def ensure(s: Service[Controller]) -> None:
        await store.ensure()
        await topology.ensure_cloud_streams(s.bus, replicas=settings.edgecontroller.stream_replicas)

    # One replica routes at a time (the holder of the "edgecontroller" lease); the others
    # stand by and take over within lease_ttl when it dies. A crash (e.g. the cloud server
    # restarting mid-publish) restarts the loop, which re-reads the downstream state and
    # resumes with only the difference - exactly what a new leader does too.
    lease = svc.lead("edgecontroller", ctl.run, ttl=settings.edgecontroller.lease_ttl, synced=lambda: ctl.synced)
    ctl.fence = lease.fence(names.STREAM_DOWN, names.down_fence_subject("edgecontroller"))
    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("edgecontroller", settings)
    run(lambda: build(settings))
