"""devicetwin's DMI side (KubeEdge >= 1.15 mappers): the ``DeviceManagerService`` on a unix
socket, and a client per registered mapper.

* A mapper calls ``MapperRegister`` with its protocol and its own socket; with ``withData``
  it gets the node's devices of that protocol (their models' defaults applied) and those
  models. From then on devicetwin keeps the mapper level with the node: new devices are
  sent with ``RegisterDevice`` (their model first, ``CreateDeviceModel``), changed ones with
  ``UpdateDevice`` (a changed desired value, whoever set it - the cloud, an edge application
  or a local rule - is a change: that is how KubeEdge delivers desired values over DMI),
  removed ones with ``RemoveDevice`` (and ``RemoveDeviceModel`` when no device uses it).
  A call that fails is retried at the next pass (every ``dmi_resync`` seconds, and on every
  change); a mapper that registers again starts afresh.
* ``ReportDeviceStatus`` twins are reported values, handled exactly like ``actual`` values of
  an MQTT ``twin/update`` (rules, deltas, the outbox to the cloud); the mapper's
  ``observedDesired`` is what it believes the desired value is, not a new desired value.
* ``ReportDeviceStates`` is a ``state/update``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from edgebus import clock
from edgebus.devices import hw
from edgebus.dmi import DeviceEntry, DmiError, MapperInfo, TwinReport
from edgebus.objects import devices as d
from services.devicetwin import logic, shapes
from services.devicetwin.hw import apply_update, set_device_state
from services.devicetwin.logic import Key
from services.devicetwin.state import TwinState

log = logging.getLogger("edgebus.devicetwin.dmi")

DMI_CALLS = Counter("edgebus_devicetwin_dmi_calls_total", "DMI calls", ["method", "outcome"])


@dataclass
class Mapper:
    info: MapperInfo
    client: Any
    devices: dict[Key, str] = field(default_factory=dict)  # sent: key -> fingerprint
    models: dict[Key, str] = field(default_factory=dict)


def _fingerprint(x: Any) -> str:
    return json.dumps(x, sort_keys=True, separators=(",", ":"), default=str)


class DmiBridge:
    def __init__(self, twin: TwinState, socket: str, *, resync: float = 10.0) -> None:
        self.dt = twin
        self.socket = socket
        self.resync = resync
        self.mappers: dict[str, Mapper] = {}
        self.wake = asyncio.Event()
        self.server: Any = None

    # -- what the node has, for one protocol -------------------------------------------------
    def entry(self, key: Key) -> DeviceEntry:
        info = self.dt.infos[key]
        twin = self.dt.twins.get(key) or logic.new_twin()
        eff = d.effective_device(info.device, info.model)
        desired = {}
        for name, p in (twin.get("props") or {}).items():
            if isinstance(p.get("desired"), dict):
                desired[name] = (str(p["desired"]["value"]), int(p["desired"].get("ts") or 0))
        types = {n: shapes.value_type(twin, info, n) for n in info.props}
        return DeviceEntry(eff, desired, types)

    def wanted(self, protocol: str) -> tuple[dict[Key, DeviceEntry], dict[Key, dict[str, Any]]]:
        devices: dict[Key, DeviceEntry] = {}
        models: dict[Key, dict[str, Any]] = {}
        for key, info in self.dt.infos.items():
            if d.device_protocol(info.device) != protocol or info.model is None:
                continue
            devices[key] = self.entry(key)
            models[(key[0], str((info.model.get("metadata") or {}).get("name") or ""))] = info.model
        return devices, models

    @staticmethod
    def _device_fp(e: DeviceEntry) -> str:
        return _fingerprint([e.device.get("spec"), {k: v for k, (v, _) in e.desired.items()}])

    # -- DeviceManagerService ---------------------------------------------------------------
    async def mapper_registered(self, info: MapperInfo, with_data: bool) -> tuple[list[DeviceEntry], list[dict[str, Any]]]:
        from edgebus.dmi import MapperClient

        old = self.mappers.pop(info.protocol, None)
        if old is not None:
            await old.client.close()
        m = Mapper(info, MapperClient(info.address))
        self.mappers[info.protocol] = m
        devices, models = self.wanted(info.protocol)
        if with_data:
            m.devices = {k: self._device_fp(e) for k, e in devices.items()}
            m.models = {k: _fingerprint(mo.get("spec")) for k, mo in models.items()}
        log.info("mapper %s (%s, protocol %s) registered at %s: %d devices", info.name, info.version, info.protocol, info.address, len(devices))
        DMI_CALLS.labels("MapperRegister", "ok").inc()
        self.kick()
        return (list(devices.values()), list(models.values())) if with_data else ([], [])

    def _info(self, namespace: str, name: str) -> logic.DeviceInfo:
        info = self.dt.infos.get((namespace, name))
        if info is None:
            raise LookupError(f"device {namespace}/{name} is not a member of node {self.dt.node}")
        return info

    async def twins_reported(self, namespace: str, name: str, twins: list[TwinReport]) -> None:
        info = self._info(namespace, name)
        now = hw.now_ms()
        actual: dict[str, tuple[Any, int]] = {}
        types: dict[str, str] = {}
        for t in twins:
            if t.reported == "":
                continue  # nothing read yet
            actual[t.property] = (t.reported, hw.ts_of(t.reported_metadata.get("timestamp"), now))
            if t.reported_metadata.get("type"):
                types[t.property] = t.reported_metadata["type"][:64]
        out, _ = await apply_update(self.dt, (namespace, name), info, actual, {}, {}, types, hw.new_event_id())
        DMI_CALLS.labels("ReportDeviceStatus", "error" if out.errors else "ok").inc()
        if out.errors:
            log.warning("DMI report for %s/%s: %s", namespace, name, "; ".join(f"{k}: {v}" for k, v in out.errors.items()))

    async def state_reported(self, namespace: str, name: str, state: str) -> None:
        self._info(namespace, name)
        if state.lower() not in logic.STATES:
            DMI_CALLS.labels("ReportDeviceStates", "rejected").inc()
            raise ValueError(f"state must be one of {', '.join(logic.STATES)} (any case), got {state!r}")
        set_device_state(self.dt, (namespace, name), state, "", hw.now_ms())
        DMI_CALLS.labels("ReportDeviceStates", "ok").inc()

    # -- keeping mappers level --------------------------------------------------------------
    def kick(self) -> None:
        self.wake.set()

    async def _call(self, method: str, coro: Any) -> bool:
        try:
            await coro
        except DmiError as exc:
            DMI_CALLS.labels(method, "failed").inc()
            log.warning("%s", exc)
            return False
        DMI_CALLS.labels(method, "ok").inc()
        return True

    async def sync(self, m: Mapper) -> None:
        devices, models = self.wanted(m.info.protocol)
        for key, mo in models.items():
            fp = _fingerprint(mo.get("spec"))
            if m.models.get(key) == fp:
                continue
            method = "UpdateDeviceModel" if key in m.models else "CreateDeviceModel"
            if await self._call(method, m.client.update_model(mo) if key in m.models else m.client.create_model(mo)):
                m.models[key] = fp
        for key, e in devices.items():
            fp = self._device_fp(e)
            if m.devices.get(key) == fp:
                continue
            new = key not in m.devices
            if await self._call("RegisterDevice" if new else "UpdateDevice", m.client.register_device(e) if new else m.client.update_device(e)):
                m.devices[key] = fp
        for key in [k for k in m.devices if k not in devices]:
            if await self._call("RemoveDevice", m.client.remove_device(*key)):
                del m.devices[key]
        for key in [k for k in m.models if k not in models]:
            if await self._call("RemoveDeviceModel", m.client.remove_model(*key)):
                del m.models[key]

    async def run(self) -> None:
        # the socket is held without gRPC until a mapper connects (socket activation: a
        # node without DMI mappers never loads grpc); that first connection is relayed
        from edgebus.dmi.activation import FirstConnection, relay

        holder = FirstConnection(self.socket)
        await holder.listen()
        log.info("DMI socket %s waiting for a mapper (gRPC starts with the first)", self.socket)
        r, w = await holder.wait()
        from edgebus.dmi import DmiServer

        self.server = DmiServer(self.socket, self)
        await self.server.start()
        first = asyncio.ensure_future(relay(r, w, self.socket))
        try:
            while True:
                await clock.wait_set(self.wake, self.resync)
                self.wake.clear()
                for m in list(self.mappers.values()):
                    try:
                        await self.sync(m)
                    except Exception:  # a mapper that misbehaves never stops the others
                        log.exception("bringing DMI mapper %s level failed; retrying", m.info.name)
        finally:
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await self.server.stop()
            for m in self.mappers.values():
                await m.client.close()
