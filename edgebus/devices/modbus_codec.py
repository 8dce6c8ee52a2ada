"""Modbus register <-> value conversion (pure; golden vectors in tests/unit).

A visitor reads ``limit`` registers (16-bit words, big-endian on the wire) or bits from
``offset``. Two swaps, as KubeEdge's Modbus visitor names them, applied to the bytes read
in this order (and undone in reverse order on writes):

* ``isRegisterSwap`` (word swap): the order of the registers is reversed;
* ``isSwap`` (byte swap): the two bytes of every register are exchanged.

Then the bytes become a value according to ``dataType``. KubeEdge's data types (what
mappers-go and the mapper-framework mappers decode, case-insensitive):

* ``int``: the bytes as an unsigned big-endian integer (1, 2, 4 or 8 bytes), times
  ``scale``, truncated toward zero;
* ``float`` / ``double``: 4 bytes are an IEEE-754 float32, 8 bytes a float64, times
  ``scale``; one register (or a coil byte) is an unsigned integer times ``scale`` (the
  temperature demo: ``limit: 1, scale: 0.1`` turns 215 into 21.5);
* ``boolean``: a coil or discrete input's first bit; a register that is not zero;
* ``string``: the bytes as UTF-8 (trailing NUL bytes dropped); ``bytes``: lower-case hex.

Coils and discrete inputs are packed into bytes as on the wire (bit 0 of the first byte is
the first bit). edgebus's explicit widths are an extension with fixed register counts:
``int16``/``uint16`` (1 register), ``int32``/``uint32``/``float32`` (2), ``int64``/
``uint64``/``float64`` (4), signed integers in two's complement; scale multiplies, and
integers become floats when scaled.

Without ``dataType`` the model's property type picks the KubeEdge type (``INT`` -> ``int``,
``FLOAT`` -> ``float``, ...); coils and discrete inputs default to ``boolean``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from edgebus.objects import devices as d

#: explicit data type -> (struct code, registers)
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
_MODEL_TO_KUBEEDGE = {d.INT: "int", d.FLOAT: "float", d.DOUBLE: "double", d.BOOLEAN: "boolean", d.STRING: "string", d.BYTES: "bytes", d.STREAM: "bytes"}


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
    def kubeedge(self) -> bool:
        """A KubeEdge data type: ``limit`` registers, unsigned integers."""
        return self.data_type in d.KUBEEDGE_DATA_TYPES

    @property
    def count(self) -> int:
        """Registers (or bits) to read."""
        if self.bits:
            return max(self.limit, 1)
        if self.data_type == "boolean":
            return 1
        if self.kubeedge:
            return max(self.limit, 1)
        return _FORMATS[self.data_type][1]


def default_data_type(register: str, model_type: str, limit: int = 1) -> str:
    """The data type when the visitor names none: KubeEdge's, from the model's property type."""
    if register in (d.COIL, d.DISCRETE_INPUT):
        return "boolean"
    return _MODEL_TO_KUBEEDGE.get(d.norm_type(model_type), "int")


def visitor_from_config(cfg: dict[str, Any], model_type: str) -> Visitor:
    """A :class:`Visitor` from a property's ``visitors.configData`` (keys in any case,
    values as numbers or as strings: KubeEdge's fixtures write both)."""
    c = d.modbus_visitor(cfg)
    register = c.get("register")
    if register not in d.MODBUS_REGISTERS:
        raise CodecError(f"unknown register {register!r}")
    limit = c.get("limit")
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else 1
    dt = c.get("dataType") or default_data_type(register, model_type, limit)
    if dt not in d.MODBUS_DATA_TYPES:
        raise CodecError(f"unknown dataType {dt!r}")
    scale = c.get("scale")
    offset = c.get("offset")
    return Visitor(
        register=register,
        offset=offset if isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0 else 0,
        limit=limit,
        data_type=str(dt),
        scale=float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale and math.isfinite(scale) else 1.0,
        byte_swap=c.get("isSwap") is True,
        word_swap=c.get("isRegisterSwap") is True,
    )


# -- bytes ---------------------------------------------------------------------------------


def _pack_bits(bits: list[bool] | list[int], count: int) -> bytes:
    out = bytearray((count + 7) // 8)
    for i, bit in enumerate(bits[:count]):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _swap(data: bytes, v: Visitor) -> bytes:
    """Word swap, then byte swap (each is its own inverse; they commute on whole words)."""
    b = bytearray(data)
    if v.word_swap and len(b) >= 4 and len(b) % 2 == 0:
        words = [b[i : i + 2] for i in range(0, len(b), 2)]
        b = bytearray(b"".join(reversed(words)))
    if v.byte_swap and len(b) >= 2:
        for i in range(0, len(b) - 1, 2):
            b[i], b[i + 1] = b[i + 1], b[i]
    return bytes(b)


def _regs_to_bytes(regs: list[int]) -> bytes:
    return b"".join((int(r) & 0xFFFF).to_bytes(2, "big") for r in regs)


def _bytes_to_regs(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _number(x: float) -> float:
    """Trim binary noise from a scaled value (215 * 0.1 -> 21.5)."""
    return float(f"{x:.12g}")


# -- decoding ------------------------------------------------------------------------------


def _decode_kubeedge(data: bytes, v: Visitor) -> int | float | bool | str:
    t = v.data_type
    if t == "boolean":
        return bool(data[0] & 1) if v.bits else any(data)
    if t == "string":
        return data.rstrip(b"\x00").decode("utf-8", errors="replace")
    if t == "bytes":
        return data.hex()
    n = len(data)
    if t == "int":
        if n not in (1, 2, 4, 8):
            raise CodecError(f"int needs 1, 2, 4 or 8 bytes, got {n}")
        n = int.from_bytes(data, "big")
        return n if v.scale == 1.0 else int(n * v.scale)  # exact when unscaled (KubeEdge goes through float64)
    if n == 4:
        (f,) = struct.unpack(">f", data)
        f = float(f"{f:.7g}")  # float32 carries ~7 significant digits
    elif n == 8:
        (f,) = struct.unpack(">d", data)
    elif n in (1, 2):
        f = float(int.from_bytes(data, "big"))
    else:
        raise CodecError(f"{t} needs 1 register, 2 (float32) or 4 (float64), got {n // 2 or n} bytes")
    if not math.isfinite(f):
        raise CodecError(f"registers hold a non-finite {t}")
    return _number(f * v.scale) if v.scale != 1.0 else f


def decode(raw: list[int] | list[bool], v: Visitor) -> int | float | bool | str:
    """The value read from ``raw`` (registers, or bits for coils / discrete inputs)."""
    if v.bits:
        if not raw:
            raise CodecError("no bits to decode")
        if not v.kubeedge:  # an explicit width over bits: the first bit as 0/1
            return int(bool(raw[0]))
        return _decode_kubeedge(_pack_bits(list(raw), v.count), v)
    regs = [int(r) & 0xFFFF for r in raw]
    if len(regs) < v.count:
        raise CodecError(f"{v.data_type} needs {v.count} registers, got {len(regs)}")
    data = _swap(_regs_to_bytes(regs[: v.count]), v)
    if v.kubeedge:
        return _decode_kubeedge(data, v)
    code, _ = _FORMATS[v.data_type]
    (val,) = struct.unpack(">" + code, data)
    if v.data_type.startswith("float"):
        if not math.isfinite(val):
            raise CodecError(f"registers hold a non-finite {v.data_type}")
        if v.data_type == "float32":
            val = float(f"{val:.7g}")
        return _number(val * v.scale) if v.scale != 1.0 else val
    if v.scale != 1.0:
        return _number(val * v.scale)
    return int(val)


# -- encoding ------------------------------------------------------------------------------


def _fits(x: int, lo: int, hi: int, value: Any, what: str, v: Visitor) -> None:
    if not lo <= x <= hi:
        raise CodecError(f"{value!r} does not fit in {what}" + (f" at scale {v.scale:g}" if v.scale != 1.0 else ""))


def _encode_kubeedge(value: Any, v: Visitor) -> bytes:
    t = v.data_type
    size = v.count * 2
    if t == "boolean":
        return b"\x00\x01" if value else b"\x00\x00"
    if t in ("string", "bytes"):
        data = bytes.fromhex(str(value)) if t == "bytes" else str(value).encode()
        if len(data) > size:
            raise CodecError(f"{t} of {len(data)} bytes does not fit in {v.count} registers")
        return data.ljust(size, b"\x00")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CodecError(f"{value!r} is not a number")
    x = value / v.scale if v.scale != 1.0 else value
    if t in ("float", "double") and size == 4:
        return struct.pack(">f", float(x))
    if t in ("float", "double") and size == 8:
        return struct.pack(">d", float(x))
    if size not in (2, 4, 8):
        raise CodecError(f"{t} cannot be written to {v.count} registers")
    n = round(x) if isinstance(x, float) else int(x)
    _fits(n, 0, (1 << (8 * size)) - 1, value, f"an unsigned {8 * size}-bit register value", v)
    return n.to_bytes(size, "big")


def encode(value: Any, v: Visitor) -> list[int] | list[bool]:
    """The registers (or bits) that make the device hold ``value``."""
    if v.bits:
        if isinstance(value, str):
            value = d.parse_value(d.BOOLEAN, value)
        return [bool(value)]
    if v.kubeedge:
        return _bytes_to_regs(_swap(_encode_kubeedge(value, v), v))
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
        _fits(int(x), lo, hi, value, v.data_type, v)
        packed = struct.pack(">" + code, int(x))
    return _bytes_to_regs(_swap(packed, v))
