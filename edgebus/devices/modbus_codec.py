"""Modbus register <-> value conversion (pure; golden vectors in tests/unit).

Registers are 16-bit words, big-endian on the wire (high byte first). A value of N bytes
spans N/2 consecutive registers, most significant word first. Two swaps, as KubeEdge's
Modbus visitor names them:

* ``isSwap`` (byte swap): the two bytes of every register are exchanged;
* ``isRegisterSwap`` (word swap): the order of the registers is reversed (for 32- and
  64-bit types; a one-register value and a string are not word-swapped).

``scale`` multiplies the decoded number (``value = raw * scale``); encoding divides (and
rounds for integer types). Coils and discrete inputs carry bits: ``boolean`` (or an integer
0/1) from the first bit.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from edgebus.objects import devices as d

#: data type -> (struct code, registers)
_FORMATS: dict[str, tuple[str, int]] = {
    "int16": ("h", 1),
    "uint16": ("H", 1),
    "int32": ("i", 2),
    "uint32": ("I", 2),
    "int64": ("q", 4),
    "uint64": ("Q", 4),
    "float32": ("f", 2),
    "float64": ("d", 4),
}
_INT_RANGES = {
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint64": (0, (1 << 64) - 1),
}


class CodecError(ValueError):
    """A value that does not fit the visitor, or registers that do not decode."""


@dataclass(frozen=True, slots=True)
class Visitor:
    """Where and how a property lives on a Modbus device (a visitor's ``configData``)."""

    register: str
    offset: int = 0
    limit: int = 1
    data_type: str = "int16"
    scale: float = 1.0
    byte_swap: bool = False
    word_swap: bool = False

    @property
    def bits(self) -> bool:
        return self.register in (d.COIL, d.DISCRETE_INPUT)

    @property
    def writable(self) -> bool:
        return self.register in d.WRITABLE_REGISTERS

    @property
    def count(self) -> int:
        """Registers (or bits) to read."""
        if self.bits:
            return max(self.limit, 1)
        if self.data_type == "string":
            return max(self.limit, 1)
        if self.data_type == "boolean":
            return 1
        return _FORMATS[self.data_type][1]


def default_data_type(register: str, model_type: str, limit: int) -> str:
    """The data type when the visitor names none: from the register kind, model type and limit."""
    if register in (d.COIL, d.DISCRETE_INPUT):
        return "boolean"
    t = d.norm_type(model_type)
    if t == d.BOOLEAN:
        return "boolean"
    if t == d.STRING:
        return "string"
    if t == d.DOUBLE:
        return "float64"
    if t == d.FLOAT:
        return "float32" if limit >= 2 else "int16"
    return {1: "int16", 2: "int32", 4: "int64"}.get(limit, "int16")


def visitor_from_config(cfg: dict[str, Any], model_type: str) -> Visitor:
    """A :class:`Visitor` from a property's ``visitors.configData`` (validated by the API)."""
    register = cfg.get("register")
    if register not in d.MODBUS_REGISTERS:
        raise CodecError(f"unknown register {register!r}")
    limit = int(cfg.get("limit") or 1)
    dt = cfg.get("dataType") or default_data_type(register, model_type, limit)
    if dt not in d.MODBUS_DATA_TYPES:
        raise CodecError(f"unknown dataType {dt!r}")
    scale = cfg.get("scale")
    return Visitor(
        register=register,
        offset=int(cfg.get("offset") or 0),
        limit=limit,
        data_type=str(dt),
        scale=float(scale) if scale not in (None, 0) else 1.0,
        byte_swap=bool(cfg.get("isSwap")),
        word_swap=bool(cfg.get("isRegisterSwap")),
    )


def _swap(registers: list[int], v: Visitor) -> list[int]:
    regs = list(registers)
    if v.word_swap and len(regs) > 1 and v.data_type != "string":
        regs.reverse()
    if v.byte_swap:
        regs = [((r & 0xFF) << 8) | ((r >> 8) & 0xFF) for r in regs]
    return regs


def _number(x: float) -> float:
    """Trim binary noise from a scaled value (215 * 0.1 -> 21.5)."""
    return float(f"{x:.12g}")


def decode(raw: list[int] | list[bool], v: Visitor) -> int | float | bool | str:
    """The value read from ``raw`` (registers, or bits for coils / discrete inputs)."""
    if v.bits:
        if not raw:
            raise CodecError("no bits to decode")
        if v.data_type == "boolean":
            return bool(raw[0])
        return int(bool(raw[0]))
    regs = [int(r) & 0xFFFF for r in raw]
    if len(regs) < v.count:
        raise CodecError(f"{v.data_type} needs {v.count} registers, got {len(regs)}")
    regs = _swap(regs[: v.count], v)
    if v.data_type == "boolean":
        return regs[0] != 0
    data = b"".join(r.to_bytes(2, "big") for r in regs)
    if v.data_type == "string":
        return data.split(b"\x00", 1)[0].decode("utf-8", errors="replace")
    code, _ = _FORMATS[v.data_type]
    (val,) = struct.unpack(">" + code, data)
    if v.data_type.startswith("float"):
        if not math.isfinite(val):
            raise CodecError(f"registers hold a non-finite {v.data_type}")
        if v.data_type == "float32":
            val = float(f"{val:.7g}")  # float32 carries ~7 significant digits
        return _number(val * v.scale) if v.scale != 1.0 else val
    if v.scale != 1.0:
        return _number(val * v.scale)
    return int(val)


def encode(value: Any, v: Visitor) -> list[int] | list[bool]:
    """The registers (or bits) that make the device hold ``value``."""
    if v.bits:
        if isinstance(value, str):
            value = d.parse_value(d.BOOLEAN, value)
        return [bool(value)]
    if v.data_type == "boolean":
        regs = [1 if value else 0]
        return _swap(regs, v)
    if v.data_type == "string":
        data = str(value).encode()
        size = v.count * 2
        if len(data) > size:
            raise CodecError(f"string of {len(data)} bytes does not fit in {v.count} registers")
        data = data.ljust(size, b"\x00")
        regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, size, 2)]
        return _swap(regs, v)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodecError(f"{value!r} is not a number")
    code, _ = _FORMATS[v.data_type]
    x = value / v.scale if v.scale != 1.0 else value
    if v.data_type.startswith("float"):
        packed = struct.pack(">" + code, float(x))
    else:
        if isinstance(x, float):
            x = round(x)
        lo, hi = _INT_RANGES[v.data_type]
        if not lo <= x <= hi:
            raise CodecError(f"{value!r} does not fit in {v.data_type}" + (f" at scale {v.scale:g}" if v.scale != 1.0 else ""))
        packed = struct.pack(">" + code, int(x))
    regs = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    # the inverse of _swap: byte swap then word swap are each their own inverse and commute
    return _swap(regs, v)
