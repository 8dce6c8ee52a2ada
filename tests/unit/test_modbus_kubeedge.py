"""Golden vectors for KubeEdge's Modbus decoding rules (the data types mappers-go and the
mapper-framework mappers use: int, float, double, boolean, string): read ``limit``
registers, swap the register order (isRegisterSwap), swap the bytes of each register
(isSwap), then convert; integers are unsigned and truncated after scaling; a one-register
float is an integer register scaled.

The registers below are written by hand from those rules, not computed by the code."""

from __future__ import annotations

import pytest

from edgebus.devices.modbus_codec import CodecError, Visitor, decode, encode, visitor_from_config


def vis(dt: str, limit: int = 1, *, scale: float = 1.0, byte: bool = False, word: bool = False, register: str = "HoldingRegister") -> Visitor:
    return Visitor(register=register, offset=0, limit=limit, data_type=dt, scale=scale, byte_swap=byte, word_swap=word)


DECODE = [
    # the temperature demo: one holding register, dataType float, scale 0.1
    (vis("float", 1, scale=0.1), [215], 21.5),
    (vis("double", 1, scale=0.01), [2150], 21.5),
    (vis("int", 1), [0xFFFE], 65534),  # unsigned
    (vis("int", 1, scale=0.1), [215], 21),  # scaled, truncated toward zero
    (vis("int", 1, scale=10), [7], 70),
    (vis("int", 2), [0x1234, 0x5678], 0x12345678),
    (vis("int", 2, word=True), [0x5678, 0x1234], 0x12345678),
    (vis("int", 2, byte=True), [0x3412, 0x7856], 0x12345678),
    (vis("int", 2, byte=True, word=True), [0x7856, 0x3412], 0x12345678),
    (vis("int", 4, word=True), [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    (vis("float", 2), [0x41AC, 0x0000], 21.5),
    (vis("float", 2, scale=2), [0x41AC, 0x0000], 43.0),
    (vis("float", 2, word=True), [0x0000, 0x41AC], 21.5),
    (vis("float", 2, byte=True), [0xAC41, 0x0000], 21.5),
    (vis("double", 4), [0x3FF8, 0, 0, 0], 1.5),
    (vis("double", 4, word=True), [0, 0, 0, 0x3FF8], 1.5),
    (vis("boolean", 1), [0x0001], True),
    (vis("boolean", 1), [0x0000], False),
    (vis("boolean", 1, byte=True), [0x0100], True),
    (vis("string", 2), [0x6564, 0x6765], "edge"),
    (vis("string", 2), [0x6869, 0x0000], "hi"),
    (vis("string", 2, word=True), [0x6765, 0x6564], "edge"),
    (vis("bytes", 2), [0x0102, 0xA0FF], "0102a0ff"),
]


@pytest.mark.parametrize("v,regs,value", DECODE)
def test_decode(v: Visitor, regs: list[int], value) -> None:
    got = decode(regs, v)
    assert got == value and type(got) is type(value)


BITS = [
    (vis("boolean", 1, register="CoilRegister"), [True], True),
    (vis("boolean", 1, register="DiscreteInputRegister"), [False, True], False),
    (vis("int", 1, register="CoilRegister"), [True], 1),  # mappers-go: the byte of bits
    # ten coils: packed LSB first into two bytes 0x01 0x03, read as a big-endian uint16
    (vis("int", 10, register="CoilRegister"), [True, False, False, False, False, False, False, False, True, True], 0x0103),
]


@pytest.mark.parametrize("v,bits,value", BITS)
def test_bits(v: Visitor, bits: list[bool], value) -> None:
    assert decode(bits, v) == value


ENCODE = [
    (vis("float", 1, scale=0.1), 22.5, [225]),
    (vis("int", 1, scale=0.1), 21, [210]),
    (vis("int", 2, word=True), 0x12345678, [0x5678, 0x1234]),
    (vis("int", 2, byte=True, word=True), 0x12345678, [0x7856, 0x3412]),
    (vis("float", 2), 21.5, [0x41AC, 0x0000]),
    (vis("double", 4, word=True), 1.5, [0, 0, 0, 0x3FF8]),
    (vis("boolean", 1), True, [0x0001]),
    (vis("string", 2), "hi", [0x6869, 0x0000]),
]


@pytest.mark.parametrize("v,value,regs", ENCODE)
def test_encode(v: Visitor, value, regs: list[int]) -> None:
    assert encode(value, v) == regs


def test_errors() -> None:
    with pytest.raises(CodecError, match="unsigned 16-bit"):
        encode(-5, vis("int", 1))
    with pytest.raises(CodecError, match="unsigned 16-bit"):
        encode(7000, vis("float", 1, scale=0.1))
    with pytest.raises(CodecError, match="needs 1 register"):
        decode([1, 2, 3], vis("float", 3))
    with pytest.raises(CodecError, match="int needs"):
        decode([1, 2, 3], vis("int", 3))


def test_visitor_spellings() -> None:
    # KubeEdge's e2e fixtures: capitalised keys, every value a string
    v = visitor_from_config({"Register": "CoilRegister", "Offset": "2", "Limit": "1", "Scale": "1", "IsSwap": "true", "IsRegisterSwap": "true"}, "INT")
    assert v == Visitor("CoilRegister", 2, 1, "boolean", 1.0, True, True)
    # the temperature demo's keys and values, extra keys (max, min) ignored
    cfg = {"dataType": "float", "register": "HoldingRegister", "offset": 0, "limit": 1, "scale": 0.1, "isSwap": False, "isRegisterSwap": False, "max": 100.0, "min": 1.0}
    assert visitor_from_config(cfg, "FLOAT") == Visitor("HoldingRegister", 0, 1, "float", 0.1, False, False)
    assert visitor_from_config({"register": "InputRegister", "dataType": "Double", "limit": 4}, "DOUBLE").data_type == "double"
    # edgebus's explicit widths stay
    assert visitor_from_config({"register": "InputRegister", "dataType": "int16", "scale": 0.1}, "FLOAT").count == 1
