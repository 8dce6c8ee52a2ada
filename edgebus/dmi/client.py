"""A client of one mapper's ``DeviceMapperService`` (its unix socket)."""

from __future__ import annotations

from typing import Any

import grpc

from edgebus.dmi import convert
from edgebus.dmi.api import DeviceEntry, DmiError
from edgebus.dmi.v1beta1 import api_pb2 as pb
from edgebus.dmi.v1beta1 import api_pb2_grpc as pbg


class MapperClient:
    def __init__(self, address: str, *, timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(address if address.startswith("unix:") else f"unix:{address}")
        self._stub = pbg.DeviceMapperServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise DmiError(f"{method} on {self.address}: {exc.code().name}: {exc.details()}") from None

    async def register_device(self, e: DeviceEntry) -> None:
        await self._call("RegisterDevice", pb.RegisterDeviceRequest(device=convert.device(e.device, e.desired, e.types)))

    async def update_device(self, e: DeviceEntry) -> None:
        await self._call("UpdateDevice", pb.UpdateDeviceRequest(device=convert.device(e.device, e.desired, e.types)))

    async def remove_device(self, namespace: str, name: str) -> None:
        await self._call("RemoveDevice", pb.RemoveDeviceRequest(deviceName=name, deviceNamespace=namespace))

    async def create_model(self, model: dict[str, Any]) -> None:
        await self._call("CreateDeviceModel", pb.CreateDeviceModelRequest(model=convert.model(model)))

    async def update_model(self, model: dict[str, Any]) -> None:
        await self._call("UpdateDeviceModel", pb.UpdateDeviceModelRequest(model=convert.model(model)))

    async def remove_model(self, namespace: str, name: str) -> None:
        await self._call("RemoveDeviceModel", pb.RemoveDeviceModelRequest(modelName=name, modelNamespace=namespace))

    async def get_device(self, namespace: str, name: str) -> dict[str, dict[str, str]]:
        """The twins the mapper holds: ``{property: {reported, observedDesired}}``."""
        r = await self._call("GetDevice", pb.GetDeviceRequest(deviceName=name, deviceNamespace=namespace))
        return {t.propertyName: {"reported": t.reported.value, "observedDesired": t.observedDesired.value} for t in r.device.status.twins}
