"""A small DMI mapper, written from the DMI interface definition only (stubs generated from
``api.proto`` into a directory of its own; nothing of edgebus is imported): it behaves like
a mapper built with KubeEdge's mapper-framework.

* registers with ``MapperRegister`` (``withData``) on the edge's socket and serves
  ``DeviceMapperService`` on its own;
* simulates one thermostat per device: ``temperature`` drifts, ``setpoint`` holds what was
  written; a desired value arriving in a device (registration or ``UpdateDevice``) is
  written to the simulated device;
* every ``--cycle`` seconds reports each device's twins (``ReportDeviceStatus``, reported
  value plus the observed desired value, metadata ``type`` and ``timestamp``) and its state
  ``ok`` (``ReportDeviceStates``), as the mapper-framework does;
* writes what it holds (devices, models, calls received) to ``--state`` as JSON after every
  change, for the test to read.

Run: ``python dmi_mapper.py --stubs DIR --edge EDGE.sock --sock MAPPER.sock --protocol P --state FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stubs", required=True)
    ap.add_argument("--edge", required=True)
    ap.add_argument("--sock", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--cycle", type=float, default=0.2)
    ap.add_argument("--probe", action="store_true", help="send bad reports first and record the answers")
    args = ap.parse_args()
    sys.path.insert(0, args.stubs)
    asyncio.run(Mapper(args).run())


class Mapper:
    def __init__(self, args: argparse.Namespace) -> None:
        import grpc
        from google.protobuf import wrappers_pb2

        import api_pb2 as pb  # generated from api.proto
        import api_pb2_grpc as pbg

        self.grpc, self.pb, self.pbg, self.wrappers = grpc, pb, pbg, wrappers_pb2
        self.args = args
        self.devices: dict[str, object] = {}  # "ns/name" -> pb.Device
        self.models: dict[str, object] = {}
        self.values: dict[str, dict[str, float]] = {}
        self.calls: list[str] = []

    # -- the simulated devices -------------------------------------------------------------
    def config(self, cv: object) -> dict[str, object]:
        out = {}
        for k, a in cv.data.items():  # type: ignore[attr-defined]
            name = a.type_url.rsplit(".", 1)[-1]
            w = getattr(self.wrappers, name)()
            a.Unpack(w)
            out[k] = w.value
        return out

    def adopt(self, dev: object) -> None:
        key = f"{dev.namespace}/{dev.name}"  # type: ignore[attr-defined]
        self.devices[key] = dev
        vals = self.values.setdefault(key, {"temperature": 20.0, "setpoint": 0.0})
        for p in dev.spec.properties:  # type: ignore[attr-defined]
            if p.name == "setpoint" and p.desired.value:
                vals["setpoint"] = float(p.desired.value)  # "write" the desired value to the device

    def dump(self) -> None:
        state = {
            "devices": {
                k: {
                    "model": d.spec.deviceModelReference,
                    "protocol": d.spec.protocol.protocolName,
                    "protocolConfig": self.config(d.spec.protocol.configData),
                    "desired": {p.name: p.desired.value for p in d.spec.properties},
                    "desiredMetadata": {p.name: dict(p.desired.metadata) for p in d.spec.properties},
                    "visitors": {p.name: self.config(p.visitors.configData) for p in d.spec.properties},
                }
                for k, d in self.devices.items()
            },
            "models": {k: [p.name for p in m.spec.properties] for k, m in self.models.items()},
            "values": self.values,
            "calls": self.calls,
            "probes": getattr(self, "probes", {}),
        }
        tmp = self.args.state + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.args.state)

    # -- DeviceMapperService ---------------------------------------------------------------
    def servicer(self) -> object:
        m, pb = self, self.pb

        class Servicer(self.pbg.DeviceMapperServiceServicer):  # type: ignore[name-defined, misc]
            async def RegisterDevice(self, request, context):  # noqa: N802
                m.calls.append(f"RegisterDevice {request.device.namespace}/{request.device.name}")
                m.adopt(request.device)
                m.dump()
                return pb.RegisterDeviceResponse(deviceName=request.device.name, deviceNamespace=request.device.namespace)

            async def UpdateDevice(self, request, context):  # noqa: N802
                m.calls.append(f"UpdateDevice {request.device.namespace}/{request.device.name}")
                m.adopt(request.device)
                m.dump()
                return pb.UpdateDeviceResponse()

            async def RemoveDevice(self, request, context):  # noqa: N802
                key = f"{request.deviceNamespace}/{request.deviceName}"
                m.calls.append(f"RemoveDevice {key}")
                m.devices.pop(key, None)
                m.values.pop(key, None)
                m.dump()
                return pb.RemoveDeviceResponse()

            async def CreateDeviceModel(self, request, context):  # noqa: N802
                m.calls.append(f"CreateDeviceModel {request.model.namespace}/{request.model.name}")
                m.models[f"{request.model.namespace}/{request.model.name}"] = request.model
                m.dump()
                return pb.CreateDeviceModelResponse(deviceModelName=request.model.name, deviceModelNamespace=request.model.namespace)

            async def UpdateDeviceModel(self, request, context):  # noqa: N802
                m.calls.append(f"UpdateDeviceModel {request.model.namespace}/{request.model.name}")
                m.models[f"{request.model.namespace}/{request.model.name}"] = request.model
                m.dump()
                return pb.UpdateDeviceModelResponse()

            async def RemoveDeviceModel(self, request, context):  # noqa: N802
                m.calls.append(f"RemoveDeviceModel {request.modelNamespace}/{request.modelName}")
                m.models.pop(f"{request.modelNamespace}/{request.modelName}", None)
                m.dump()
                return pb.RemoveDeviceModelResponse()

            async def GetDevice(self, request, context):  # noqa: N802
                key = f"{request.deviceNamespace}/{request.deviceName}"
                if key not in m.devices:
                    await context.abort(m.grpc.StatusCode.NOT_FOUND, f"device {key} not found")
                return pb.GetDeviceResponse(device=pb.Device(name=request.deviceName, namespace=request.deviceNamespace, status=pb.DeviceStatus(twins=m.twins(key))))

        return Servicer()

    def twins(self, key: str) -> list[object]:
        pb = self.pb
        dev = self.devices[key]
        now = str(int(time.time() * 1000))
        out = []
        for p in dev.spec.properties:  # type: ignore[attr-defined]
            if p.name not in self.values[key]:
                continue
            t = p.desired.metadata.get("type", "")
            value = self.values[key][p.name]
            out.append(
                pb.Twin(
                    propertyName=p.name,
                    reported=pb.TwinProperty(value=f"{value:g}", metadata={"type": t, "timestamp": now}),
                    observedDesired=pb.TwinProperty(value=p.desired.value, metadata={"type": t, "timestamp": now}),
                )
            )
        return out

    async def probe(self, manager: object) -> dict[str, str]:
        """Bad reports, each answered with a status code (what a broken mapper would send)."""
        grpc, pb = self.grpc, self.pb
        out = {}
        cases = {
            "unknown-device": ("ReportDeviceStatus", pb.ReportDeviceStatusRequest(deviceName="ghost", deviceNamespace="default", reportedDevice=pb.DeviceStatus(twins=[pb.Twin(propertyName="x", reported=pb.TwinProperty(value="1"))]))),
            "no-twins": ("ReportDeviceStatus", pb.ReportDeviceStatusRequest(deviceName="ghost", deviceNamespace="default")),
            "bad-state": ("ReportDeviceStates", pb.ReportDeviceStatesRequest(deviceName=next(iter(self.devices), "/").split("/")[1], deviceNamespace="default", state="exploded")),
            "unknown-state-device": ("ReportDeviceStates", pb.ReportDeviceStatesRequest(deviceName="ghost", deviceNamespace="default", state="ok")),
            "bad-value": ("ReportDeviceStatus", pb.ReportDeviceStatusRequest(deviceName=next(iter(self.devices), "/").split("/")[1], deviceNamespace="default", reportedDevice=pb.DeviceStatus(twins=[pb.Twin(propertyName="temperature", reported=pb.TwinProperty(value="warm")), pb.Twin(propertyName="nope", reported=pb.TwinProperty(value="1"))]))),
        }
        for name, (method, req) in cases.items():
            try:
                await getattr(manager, method)(req, timeout=2)
                out[name] = "OK"
            except grpc.aio.AioRpcError as exc:
                out[name] = exc.code().name
        return out

    # -- running ---------------------------------------------------------------------------
    async def run(self) -> None:
        grpc, pb = self.grpc, self.pb
        if os.path.exists(self.args.sock):
            os.unlink(self.args.sock)
        edge = grpc.aio.insecure_channel(f"unix:{self.args.edge}")
        manager = self.pbg.DeviceManagerServiceStub(edge)
        info = pb.MapperInfo(name="test-dmi-mapper", version="v1.20.0", api_version="v1.0.0", protocol=self.args.protocol, address=self.args.sock.encode(), state="ok")
        while True:  # the edge may not be up yet
            try:
                resp = await manager.MapperRegister(pb.MapperRegisterRequest(withData=True, mapper=info), timeout=2)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.2)
        for mo in resp.modelList:
            self.models[f"{mo.namespace}/{mo.name}"] = mo
        for dev in resp.deviceList:
            self.adopt(dev)
        self.calls.append(f"MapperRegister {len(resp.deviceList)} devices")
        self.probes = await self.probe(manager) if self.args.probe else {}
        self.dump()
        server = grpc.aio.server()
        self.pbg.add_DeviceMapperServiceServicer_to_server(self.servicer(), server)
        server.add_insecure_port(f"unix:{self.args.sock}")
        await server.start()
        while True:
            await asyncio.sleep(self.args.cycle)
            for key in list(self.devices):
                ns, name = key.split("/", 1)
                self.values[key]["temperature"] = round(self.values[key]["temperature"] + 0.1, 1)
                try:
                    await manager.ReportDeviceStatus(pb.ReportDeviceStatusRequest(deviceName=name, deviceNamespace=ns, reportedDevice=pb.DeviceStatus(twins=self.twins(key))), timeout=2)
                    await manager.ReportDeviceStates(pb.ReportDeviceStatesRequest(deviceName=name, deviceNamespace=ns, state="ok"), timeout=2)
                except grpc.aio.AioRpcError as exc:
                    self.calls.append(f"report failed: {exc.code().name}")
            self.dump()


if __name__ == "__main__":
    main()
