"""Simulated devices for the lab, the tests and the benchmarks: a Modbus thermostat
(pymodbus server, TCP or RTU on a serial device) and an OPC-UA one (asyncua server).

Modbus thermostat register map (device id 1 by default):

===================  ==========  =========================================
register             address     value
===================  ==========  =========================================
input register       0           temperature, int16, scale 0.1 (215 = 21.5)
input registers      1-2         humidity, float32 (big-endian words)
holding register     0           setpoint, int16, scale 0.1 (read/write)
coil                 0           fan (read/write)
discrete input       0           alarm (temperature above 35)
===================  ==========  =========================================

With ``drift`` the temperature rises 0.2 °C/s while the fan is off and falls 0.5 °C/s
while it is on, so a "fan on above 30, off below 28" rule keeps it between the two.
``fail_code`` makes every request fail with that Modbus exception code; ``delay`` makes
the device answer that many seconds late (a timeout for a client with a shorter one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from typing import Any

log = logging.getLogger("edgebus.simulator")


class ModbusThermostat:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5020,
        *,
        device_id: int = 1,
        temperature: float = 24.0,
        setpoint: float = 22.0,
        humidity: float = 45.0,
        drift: bool = True,
        tick: float = 0.5,
        serial_port: str = "",
        baudrate: int = 19200,
        parity: str = "N",
    ) -> None:
        self.host = host
        self.port = port
        #: Modbus RTU on this serial device instead of TCP (e.g. one end of a pty pair)
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.parity = parity
        self.device_id = device_id
        self.temperature = temperature
        self.setpoint = setpoint
        self.humidity = humidity
        self.fan = False
        self.drift = drift
        self.tick = tick
        self.fail_code = 0
        self.delay = 0.0
        self.writes: list[tuple[float, str, Any]] = []
        self.requests = 0
        self._server: Any = None
        self._tasks: list[asyncio.Task[Any]] = []

    # -- the device's view ------------------------------------------------------------
    def _ir(self) -> list[int]:
        t = max(min(round(self.temperature * 10), 32767), -32768) & 0xFFFF
        hum = struct.pack(">f", self.humidity)
        return [t, int.from_bytes(hum[:2], "big"), int.from_bytes(hum[2:], "big")]

    async def _action(self, fc: int, start: int, address: int, count: int, registers: list[int], set_values: Any) -> Any:
        from pymodbus.constants import ExcCodes

        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_code:
            return ExcCodes(self.fail_code)
        if fc == 4:  # input registers
            for i, v in enumerate(self._ir()):
                if 0 <= i - start < len(registers):
                    registers[i - start] = v
        elif fc in (3, 6, 16, 22, 23):  # holding registers
            if set_values:
                if address <= 0 < address + len(set_values):
                    raw = int(set_values[0 - address]) & 0xFFFF
                    self.setpoint = (raw - 0x10000 if raw & 0x8000 else raw) / 10
                    self.writes.append((time.time(), "setpoint", self.setpoint))
            elif 0 - start < len(registers):
                registers[0 - start] = max(min(round(self.setpoint * 10), 32767), -32768) & 0xFFFF
        elif fc in (1, 5, 15):  # coils
            if set_values:
                if address == 0:
                    self.fan = bool(set_values[0])
                    self.writes.append((time.time(), "fan", self.fan))
            else:
                registers[0] = (registers[0] & ~1) | (1 if self.fan else 0)
        elif fc == 2:  # discrete inputs
            registers[0] = (registers[0] & ~1) | (1 if self.temperature > 35 else 0)
        return None

    def _device(self) -> Any:
        from pymodbus.simulator import DataType, SimData, SimDevice

        def bits() -> list[Any]:
            return [SimData(0, values=[False] * 16, datatype=DataType.BITS)]

        def regs() -> list[Any]:
            return [SimData(0, values=[0] * 16, datatype=DataType.REGISTERS)]

        return SimDevice(id=self.device_id, simdata=(bits(), bits(), regs(), regs()), action=self._action)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        if self.serial_port:
            self._server = ModbusSerialServer(self._device(), port=self.serial_port, baudrate=self.baudrate, parity=self.parity)
        else:
            self._server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        self._tasks.append(asyncio.create_task(self._server.serve_forever(), name="modbus-sim"))
        if self.drift:
            self._tasks.append(asyncio.create_task(self._drift(), name="modbus-sim-drift"))
        if self.serial_port:
            return
        for _ in range(200):  # wait until the port accepts connections
            try:
                _, w = await asyncio.open_connection(self.host, self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.02)
        raise RuntimeError(f"Modbus simulator did not start on {self.host}:{self.port}")

    async def _drift(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            rate = -0.5 if self.fan else 0.2
            self.temperature = round(self.temperature + rate * self.tick + random.uniform(-0.02, 0.02), 2)
            self.humidity = round(min(max(self.humidity + random.uniform(-0.2, 0.2), 10.0), 90.0), 2)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks.clear()


class OpcuaThermostat:
    """An OPC-UA server with ``Thermostat/{Temperature (Double, read-only), Setpoint (Double),
    Fan (Boolean)}`` in namespace ``urn:edgebus:thermostat`` (node ids ``ns=2;s=<Name>``)."""

    NAMESPACE = "urn:edgebus:thermostat"

    def __init__(self, host: str = "127.0.0.1", port: int = 4840, *, temperature: float = 24.0, setpoint: float = 22.0, drift: bool = True, tick: float = 0.5) -> None:
        self.host = host
        self.port = port
        self.temperature = temperature
        self.setpoint = setpoint
        self.fan = False
        self.drift = drift
        self.tick = tick
        self.ns = 2
        self._server: Any = None
        self._nodes: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/edgebus/"

    async def start(self) -> None:
        from asyncua import Server, ua

        for noisy in ("asyncua", "asyncua.server"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        srv = Server()
        await srv.init()
        srv.set_endpoint(self.url)
        srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.ns = await srv.register_namespace(self.NAMESPACE)
        obj = await srv.nodes.objects.add_object(self.ns, "Thermostat")
        self._nodes["Temperature"] = await obj.add_variable(ua.NodeId(ua.String("Temperature"), ua.Int16(self.ns)), "Temperature", float(self.temperature), ua.VariantType.Double)
        self._nodes["Setpoint"] = await obj.add_variable(ua.NodeId(ua.String("Setpoint"), ua.Int16(self.ns)), "Setpoint", float(self.setpoint), ua.VariantType.Double)
        self._nodes["Fan"] = await obj.add_variable(ua.NodeId(ua.String("Fan"), ua.Int16(self.ns)), "Fan", False, ua.VariantType.Boolean)
        await self._nodes["Setpoint"].set_writable()
        await self._nodes["Fan"].set_writable()
        await srv.start()
        self._server = srv
        self._task = asyncio.create_task(self._loop(), name="opcua-sim")

    async def set_temperature(self, value: float) -> None:
        self.temperature = value
        await self._nodes["Temperature"].write_value(float(value))

    async def read(self, name: str) -> Any:
        return await self._nodes[name].read_value()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self.fan = bool(await self._nodes["Fan"].read_value())
            self.setpoint = float(await self._nodes["Setpoint"].read_value())
            if self.drift:
                rate = -0.5 if self.fan else 0.2
                await self.set_temperature(round(self.temperature + rate * self.tick, 2))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.stop()
