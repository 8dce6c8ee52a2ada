"""devicetwin's DMI server: ``DeviceManagerService`` on a unix socket (grpc.aio)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import grpc

from edgebus.dmi import convert
from edgebus.dmi.api import DmiHandler, MapperInfo, TwinReport
from edgebus.dmi.v1beta1 import api_pb2 as pb
from edgebus.dmi.v1beta1 import api_pb2_grpc as pbg

log = logging.getLogger("edgebus.dmi")


class _Servicer(pbg.DeviceManagerServiceServicer):
    def __init__(self, handler: DmiHandler) -> None:
        self.handler = handler

    async def MapperRegister(self, request: pb.MapperRegisterRequest, context: grpc.aio.ServicerContext) -> pb.MapperRegisterResponse:  # noqa: N802
        m = request.mapper
        if not m.protocol:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"fail to register mapper {m.name} because the protocol is nil")
        info = MapperInfo(m.name, m.version, m.api_version, m.protocol, m.address.decode(errors="replace"), m.state)
        devices, models = await self.handler.mapper_registered(info, request.withData)
        if not request.withData:
            return pb.MapperRegisterResponse()
        return pb.MapperRegisterResponse(
            deviceList=[convert.device(e.device, e.desired, e.types) for e in devices],
            modelList=[convert.model(mo) for mo in models],
        )

    async def ReportDeviceStatus(self, request: pb.ReportDeviceStatusRequest, context: grpc.aio.ServicerContext) -> pb.ReportDeviceStatusResponse:  # noqa: N802
        if not request.HasField("reportedDevice") or not request.reportedDevice.twins:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ReportDeviceStatusRequest does not have twin data")
        twins = [
            TwinReport(t.propertyName, t.reported.value, dict(t.reported.metadata), t.observedDesired.value, dict(t.observedDesired.metadata))
            for t in request.reportedDevice.twins
        ]
        try:
            await self.handler.twins_reported(request.deviceNamespace or "default", request.deviceName, twins)
        except LookupError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        return pb.ReportDeviceStatusResponse()

    async def ReportDeviceStates(self, request: pb.ReportDeviceStatesRequest, context: grpc.aio.ServicerContext) -> pb.ReportDeviceStatesResponse:  # noqa: N802
        if not request.state or not request.deviceName:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "ReportDeviceStatesRequest is invalid data")
        try:
            await self.handler.state_reported(request.deviceNamespace or "default", request.deviceName, request.state)
        except LookupError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.ReportDeviceStatesResponse()


class DmiServer:
    """Serve ``DeviceManagerService`` for ``handler`` on the unix socket ``path``."""

    def __init__(self, path: str | Path, handler: DmiHandler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket() or self.path.exists():
            os.unlink(self.path)  # a stale socket of a previous run
        server = grpc.aio.server()
        pbg.add_DeviceManagerServiceServicer_to_server(_Servicer(self.handler), server)
        server.add_insecure_port(f"unix:{self.path}")
        await server.start()
        self._server = server
        log.info("DMI server listening on %s", self.path)

    async def stop(self, grace: float = 2.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
