"""KubeEdge's Device Management Interface (DMI v1beta1): gRPC over unix sockets between the
edge and mappers. The only layer that imports grpc besides :mod:`edgebus.cri`, and the only
one that imports the DMI stubs (generated at setup from ``v1beta1/api.proto``).

* :class:`DmiServer` serves ``DeviceManagerService`` (devicetwin's side) and hands mapper
  registrations, twin reports and state reports to a :class:`DmiHandler` as plain data;
* :class:`MapperClient` calls a mapper's ``DeviceMapperService`` with Device and
  DeviceModel objects (dicts), converted by :mod:`edgebus.dmi.convert`.
"""

from __future__ import annotations

from edgebus.dmi.api import DeviceEntry, DmiError, DmiHandler, MapperInfo, TwinReport, stubs_available

__all__ = ["DeviceEntry", "DmiError", "DmiHandler", "DmiServer", "MapperClient", "MapperInfo", "TwinReport", "stubs_available"]


def __getattr__(name: str):  # the gRPC side loads only when used (stubs are generated at setup)
    if name == "DmiServer":
        from edgebus.dmi.server import DmiServer

        return DmiServer
    if name == "MapperClient":
        from edgebus.dmi.client import MapperClient

        return MapperClient
    raise AttributeError(name)
