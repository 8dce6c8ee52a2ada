"""The Modbus driver (pymodbus 3.16 async clients): TCP or RTU, the four register kinds,
decoding in :mod:`edgebus.devices.modbus_codec`.

Protocol ``configData`` (the Device's ``spec.protocol.configData``; keys in any case,
numbers also as strings)::

    transport: tcp            # tcp (default) | rtu; also communicateMode: TCP | RTU
    ip: 127.0.0.1             # tcp (also: host)
    port: 502                 # tcp
    deviceID: 1               # the unit / slave id (also: slaveID)
    timeout: 1.0              # seconds per request (a value above 100 is milliseconds)
    serialPort: /dev/ttyUSB0  # rtu (also: serialName)
    baudRate: 19200           # rtu
    dataBits: 8               # rtu
    parity: N                 # rtu: N | E | O (also none | even | odd)
    stopBits: 1               # rtu
"""

from __future__ import annotations

import logging
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from edgebus.devices.mapper import DeviceConfig, DeviceFault, Driver, LinkDown, PropSpec
from edgebus.devices.modbus_codec import CodecError, Visitor, decode, encode, visitor_from_config
from edgebus.objects import devices as d

log = logging.getLogger("edgebus.mapper.modbus")

# pymodbus logs a hex dump of the last frames on every error; the worker reports errors itself.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


_PARITY = {"n": "N", "none": "N", "e": "E", "even": "E", "o": "O", "odd": "O"}


def settings_of(cfg: dict[str, Any], default_timeout: float) -> dict[str, Any]:
    """Connection settings from the protocol ``configData``: keys in any case, numbers as
    numbers or strings (KubeEdge's fixtures and demos write ``port: "5502"``, ``SerialPort``,
    ``parity: even``, ``communicateMode: TCP``)."""
    c = {str(k).lower(): d.coerce_scalar(v) for k, v in (cfg or {}).items()}

    def first(*keys: str, default: Any = None) -> Any:
        for k in keys:
            if c.get(k) not in (None, ""):
                return c[k]
        return default

    serial = first("serialport", "serialname", default="")
    transport = str(first("transport", "communicatemode", default="rtu" if serial else "tcp")).lower()
    timeout = first("timeout", default=default_timeout)
    return {
        "transport": "rtu" if transport == "rtu" else "tcp",
        "host": str(first("ip", "host", default="127.0.0.1")),
        "port": int(first("port", default=502)),
        "device_id": int(first("deviceid", "slaveid", default=1)),
        # KubeEdge's mappers take milliseconds above 100 (e.g. 1000), edgebus seconds
        "timeout": float(timeout) / 1000 if isinstance(timeout, (int, float)) and timeout > 100 else float(timeout or default_timeout),
        "serial_port": str(serial),
        "baudrate": int(first("baudrate", default=19200)),
        "bytesize": int(first("databits", default=8)),
        "parity": _PARITY.get(str(first("parity", default="N")).lower(), "N"),
        "stopbits": int(first("stopbits", default=1)),
    }


class ModbusDriver(Driver):
    def __init__(self, config: DeviceConfig, *, default_timeout: float = 1.0) -> None:
        super().__init__(config)
        self.s = settings_of(config.protocol, default_timeout)
        self.client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self.visitors: dict[str, Visitor] = {}

    def visitor(self, p: PropSpec) -> Visitor:
        v = self.visitors.get(p.name)
        if v is None:
            try:
                v = visitor_from_config(p.config, p.prop.type)
            except CodecError as exc:
                raise DeviceFault(f"bad visitor for {p.name}: {exc}") from None
            self.visitors[p.name] = v
        return v

    async def connect(self) -> None:
        s = self.s
        if s["transport"] == "rtu":
            self.client = AsyncModbusSerialClient(
                s["serial_port"], baudrate=s["baudrate"], bytesize=s["bytesize"], parity=s["parity"], stopbits=s["stopbits"],
                timeout=s["timeout"], retries=0, reconnect_delay=0,
            )
            where = s["serial_port"]
        else:
            self.client = AsyncModbusTcpClient(s["host"], port=s["port"], timeout=s["timeout"], retries=0, reconnect_delay=0)
            where = f"{s['host']}:{s['port']}"
        try:
            ok = await self.client.connect()
        except (OSError, ModbusException) as exc:
            raise LinkDown(f"cannot connect to Modbus {s['transport']} device at {where}: {exc}") from None
        if not ok:
            raise LinkDown(f"cannot connect to Modbus {s['transport']} device at {where}")

    async def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _fail(self, op: str, p: PropSpec, v: Visitor, exc: Exception) -> Exception:
        if self.client is None or not self.client.connected or isinstance(exc, ConnectionException):
            return LinkDown(f"connection lost {op} {p.name}: {exc}")
        if isinstance(exc, ModbusIOException):
            return DeviceFault(f"no answer from device {self.s['device_id']} within {self.s['timeout']:g}s ({v.register} {v.offset})")
        return DeviceFault(f"{exc}")

    async def read(self, p: PropSpec) -> Any:
        v = self.visitor(p)
        c = self.client
        if c is None:
            raise LinkDown("not connected")
        fn = {
            d.COIL: c.read_coils,
            d.DISCRETE_INPUT: c.read_discrete_inputs,
            d.HOLDING: c.read_holding_registers,
            d.INPUT: c.read_input_registers,
        }[v.register]
        try:
            rr = await fn(v.offset, count=v.count, device_id=self.s["device_id"])
        except (ModbusException, OSError) as exc:
            raise self._fail("reading", p, v, exc) from None
        if rr.isError():
            code = getattr(rr, "exception_code", 0)
            raise DeviceFault(f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) at {v.register} {v.offset}")
        raw = list(rr.bits[: v.count]) if v.bits else list(rr.registers)
        try:
            return decode(raw, v)
        except CodecError as exc:
            raise DeviceFault(f"cannot decode {p.name}: {exc}") from None

    async def write(self, p: PropSpec, value: Any) -> None:
        v = self.visitor(p)
        if not v.writable:
            raise ValueError(f"{v.register} cannot be written")
        c = self.client
        if c is None:
            raise LinkDown("not connected")
        try:
            raw = encode(value, v)
        except CodecError as exc:
            raise ValueError(str(exc)) from None
        dev = self.s["device_id"]
        try:
            if v.register == d.COIL:
                rr = await c.write_coil(v.offset, bool(raw[0]), device_id=dev)
            elif len(raw) == 1:
                rr = await c.write_register(v.offset, int(raw[0]), device_id=dev)
            else:
                rr = await c.write_registers(v.offset, [int(x) for x in raw], device_id=dev)
        except (ModbusException, OSError) as exc:
            raise self._fail("writing", p, v, exc) from None
        if rr.isError():
            code = getattr(rr, "exception_code", 0)
            raise DeviceFault(f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) writing {v.register} {v.offset}")
