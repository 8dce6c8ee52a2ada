"""Golden vectors: every Modbus data type, with each byte/word swap combination, and scale.

Registers are written out by hand from the IEEE-754 / two's-complement bytes (big-endian
words, most significant word first), not computed by the code under test."""

from __future__ import annotations

import pytest

from edgebus.devices.modbus_codec import CodecError, Visitor, decode, default_data_type, encode, visitor_from_config

# (data type, value, registers with: no swap, word swap, byte swap, both)
GOLDEN = [
    ("int16", -2, [0xFFFE], [0xFFFE], [0xFEFF], [0xFEFF]),
    ("int16", 12345, [0x3039], [0x3039], [0x3930], [0x3930]),
    ("uint16", 51000, [0xC738], [0xC738], [0x38C7], [0x38C7]),
    ("int32", -100000, [0xFFFE, 0x7960], [0x7960, 0xFFFE], [0xFEFF, 0x6079], [0x6079, 0xFEFF]),
    ("uint32", 0x12345678, [0x1234, 0x5678], [0x5678, 0x1234], [0x3412, 0x7856], [0x7856, 0x3412]),
    ("int64", -2, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], [0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF], [0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF], [0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF]),
    ("uint64", 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708], [0x0708, 0x0506, 0x0304, 0x0102], [0x0201, 0x0403, 0x0605, 0x0807], [0x0807, 0x0605, 0x0403, 0x0201]),
    ("float32", 21.5, [0x41AC, 0x0000], [0x0000, 0x41AC], [0xAC41, 0x0000], [0x0000, 0xAC41]),
    ("float32", -0.15625, [0xBE20, 0x0000], [0x0000, 0xBE20], [0x20BE, 0x0000], [0x0000, 0x20BE]),
    ("float64", 1.5, [0x3FF8, 0, 0, 0], [0, 0, 0, 0x3FF8], [0xF83F, 0, 0, 0], [0, 0, 0, 0xF83F]),
    ("float64", -2.25, [0xC002, 0x0000, 0x0000, 0x0000], [0, 0, 0, 0xC002], [0x02C0, 0, 0, 0], [0, 0, 0, 0x02C0]),
    ("boolean", True, [0x0001], [0x0001], [0x0100], [0x0100]),
    ("boolean", False, [0x0000], [0x0000], [0x0000], [0x0000]),
    # KubeEdge swaps the registers of every type, strings included
    ("string", "edge", [0x6564, 0x6765], [0x6765, 0x6564], [0x6465, 0x6567], [0x6567, 0x6465]),
]
SWAPS = [(False, False), (False, True), (True, False), (True, True)]  # (byte swap, word swap)


def vis(dt: str, *, byte: bool = False, word: bool = False, scale: float = 1.0, limit: int = 2, register: str = "HoldingRegister") -> Visitor:
    return Visitor(register=register, offset=0, limit=limit, data_type=dt, scale=scale, byte_swap=byte, word_swap=word)


@pytest.mark.parametrize("dt,value,plain,word,byte,both", GOLDEN)
@pytest.mark.parametrize("swap", SWAPS, ids=["none", "word", "byte", "byte+word"])
def test_golden(dt, value, plain, word, byte, both, swap) -> None:
    bs, ws = swap
    regs = {(False, False): plain, (False, True): word, (True, False): byte, (True, True): both}[swap]
    v = vis(dt, byte=bs, word=ws)
    assert encode(value, v) == regs
    assert decode(regs, v) == value


SCALED = [
    # (data type, scale, registers (no swap), value)
    ("int16", 0.1, [0x00D7], 21.5),
    ("int16", 0.1, [0xFF29], -21.5),
    ("uint16", 0.01, [0xFFFF], 655.35),
    ("int32", 0.001, [0x0001, 0xE240], 123.456),
    ("uint32", 10, [0x0000, 0x0102], 2580.0),
    ("float32", 10, [0x4009, 0x999A], 21.5),  # 2.15f * 10
    ("float64", 0.5, [0x4045, 0, 0, 0], 21.0),  # 42.0 * 0.5
]


@pytest.mark.parametrize("dt,scale,regs,value", SCALED)
@pytest.mark.parametrize("swap", SWAPS, ids=["none", "word", "byte", "byte+word"])
def test_scale(dt, scale, regs, value, swap) -> None:
    bs, ws = swap
    wire = list(regs)
    if ws and len(wire) > 1:
        wire.reverse()
    if bs:
        wire = [((r & 0xFF) << 8) | (r >> 8) for r in wire]
    v = vis(dt, byte=bs, word=ws, scale=scale)
    assert decode(wire, v) == pytest.approx(value)
    assert decode(encode(value, v), v) == pytest.approx(value)
    if not dt.startswith("float"):
        assert encode(value, v) == wire


def test_bits() -> None:
    coil = vis("boolean", register="CoilRegister", limit=1)
    assert encode(True, coil) == [True] and encode("false", coil) == [False]
    assert decode([True, False], coil) is True and decode([False], coil) is False
    as_int = Visitor(register="DiscreteInputRegister", data_type="int16")
    assert decode([True], as_int) == 1


def test_errors() -> None:
    with pytest.raises(CodecError, match="does not fit"):
        encode(40000, vis("int16"))
    with pytest.raises(CodecError, match="does not fit"):
        encode(-1, vis("uint32"))
    with pytest.raises(CodecError, match="at scale 0.1"):
        encode(4000.0, vis("int16", scale=0.1))
    with pytest.raises(CodecError, match="does not fit in 2 registers"):
        encode("toolong", vis("string", limit=2))
    with pytest.raises(CodecError, match="needs 2 registers"):
        decode([1], vis("float32"))
    with pytest.raises(CodecError, match="non-finite"):
        decode([0x7FC0, 0x0000], vis("float32"))  # NaN
    with pytest.raises(CodecError, match="not a number"):
        encode("abc", vis("int16"))


def test_defaults_from_config() -> None:
    # without dataType: KubeEdge's type of the model property
    assert default_data_type("CoilRegister", "INT", 1) == "boolean"
    assert default_data_type("HoldingRegister", "FLOAT", 2) == "float"
    assert default_data_type("HoldingRegister", "int", 2) == "int"
    assert default_data_type("InputRegister", "DOUBLE", 4) == "double"
    v = visitor_from_config({"register": "HoldingRegister", "offset": 3, "limit": 2, "scale": 0.5, "isSwap": True, "isRegisterSwap": True}, "FLOAT")
    assert v == Visitor("HoldingRegister", 3, 2, "float", 0.5, True, True)
    assert v.count == 2 and v.writable
    with pytest.raises(CodecError):
        visitor_from_config({"register": "Nope"}, "INT")
