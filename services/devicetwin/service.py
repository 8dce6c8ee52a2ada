"""devicetwin: the node's device twins, KubeEdge's ``$hw`` topics, and local rules.

The wiring: one :class:`~services.devicetwin.state.TwinState` shared by the tasks

* ``hw`` (:mod:`.hw`): the device-facing ``$hw`` topics;
* ``meta-sync`` (:mod:`.sync`): the node's Devices and DeviceModels from metamanager;
* ``upstream`` (:mod:`.upstream`): twin reports and rule events into the node's outbox;
* ``dmi`` (:mod:`.dmi`, when enabled and its stubs are generated): KubeEdge's DMI;

and the local API routes (:mod:`.api`). Ready once the first re-list is applied.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from edgebus import names, topology
from edgebus.bus import Router
from edgebus.dmi import stubs_available
from edgebus.metaclient import MetaClient
from edgebus.runtime import Service, setup_logging
from services.devicetwin import api, hw, sync, upstream
from services.devicetwin.config import Settings
from services.devicetwin.dmi import DmiBridge
from services.devicetwin.state import TwinState
from services.devicetwin.store import TwinStore

log = logging.getLogger("edgebus.devicetwin")


def build(settings: Settings | None = None) -> Service[TwinState]:
    settings = settings or Settings()
    if not settings.node:
        raise SystemExit("devicetwin needs EDGEBUS_NODE (the name of this edge node)")
    node, cfg = settings.node, settings.devicetwin
    router: Router[TwinState] = Router("devicetwin")
    svc: Service[TwinState] = Service("devicetwin", settings, router=router)
    store = TwinStore(Path(cfg.data_dir))
    st = TwinState(node=node, cfg=cfg, bus=svc.bus, store=store, meta=MetaClient(svc.bus, node, timeout=5.0, source="devicetwin"), twins=store.load())
    svc.ctx = st
    router.reply(names.devicetwin_subject(node, "twins"), name="twins")(api.twins)
    router.reply(names.devicetwin_subject(node, "events"), name="events")(api.events)

    async def ensure_streams(_: Service[Any]) -> None:
        await topology.ensure_edge_streams(svc.bus, node, settings.cloud_domain)

    async def close(_: Service[Any]) -> None:
        store.close()

    svc.on_start(ensure_streams)
    svc.on_stop(close)
    svc.task("hw", lambda: hw.run(st))
    svc.task("meta-sync", lambda: sync.run(st))
    svc.task("upstream", lambda: upstream.run(st))
    svc.readiness_check("synced", lambda: st.synced)
    if cfg.dmi:
        if stubs_available():
            dmi = DmiBridge(st, cfg.dmi_socket or str(Path(cfg.data_dir) / "dmi.sock"), resync=cfg.dmi_resync)
            st.dmi = dmi
            st.on_change.append(lambda _key: dmi.kick())
            svc.task("dmi", dmi.run)
        else:
            log.warning("DMI disabled: its stubs are not generated (run ./dev setup, or python -m edgebus.protogen)")
    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("devicetwin", settings)
    run(lambda: build(settings))


__all__ = ["build", "main"]
