"""Decoding Kubernetes' protobuf request bodies (``application/vnd.kubernetes.protobuf``)
into the JSON objects the API stores. kubectl 1.32+ sends its imperative creates (``kubectl
create deployment|configmap|job ...``) this way.

The wire format is Kubernetes' ``runtime.Unknown`` envelope (the magic ``k8s\\x00``, then
``typeMeta``, ``raw``, ...) around the kind's message; field numbers, names and types come
from the vendored tables of the ``generated.proto`` files (``k8s-proto.json.gz``, see
:mod:`edgebus.openapi.protobuild`). JSON form as Kubernetes' encoders write it: ``Time`` as
RFC 3339, ``Quantity`` and ``IntOrString`` as their string/number, ``bytes`` as base64,
``RawExtension`` as the embedded JSON, embedded structs inlined. Go's marshaller writes
non-pointer fields even when empty: zero scalars are dropped (as ``omitempty`` does) except for
the pointer fields where an explicit zero means something (:data:`KEEP_ZERO`). Pure; no I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import gzip
import json
import struct
from pathlib import Path
from typing import Any

from edgebus.errors import BadRequest

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
VENDORED = Path(__file__).with_name("k8s-proto.json.gz")


class ProtobufError(BadRequest):
    """A request body that is not valid Kubernetes protobuf (answered 400)."""

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
#: pointer fields whose explicit 0 / false is kept (``--replicas=0``, ``suspend: false``, ...)
KEEP_ZERO = frozenset(
    {
        "replicas",
        "terminationGracePeriodSeconds",
        "backoffLimit",
        "parallelism",
        "completions",
        "revisionHistoryLimit",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
        "ttlSecondsAfterFinished",
        "startingDeadlineSeconds",
        "activeDeadlineSeconds",
        "progressDeadlineSeconds",
        "partition",
        "suspend",
        "automountServiceAccountToken",
        "immutable",
        "defaultMode",
    }
)
_SIGNED32 = {"int32", "sint32"}
_VARINTS = {"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool"}


@functools.cache
def messages() -> dict[str, dict[str, list[Any]]]:
    return dict(json.loads(gzip.decompress(VENDORED.read_bytes()))["messages"])


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    i = 0
    v: Any
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i : i + n], i + n
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        if i > len(buf):
            raise ValueError("truncated field")
        out.append((num, wt, v))
    return out


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _scalar(typ: str, wt: int, v: Any) -> Any:
    if typ == "string":
        return bytes(v).decode("utf-8")
    if typ == "bytes":
        return base64.b64encode(bytes(v)).decode()
    if typ == "bool":
        return bool(v)
    if typ in ("double", "fixed64") and wt == 1:
        return struct.unpack("<d" if typ == "double" else "<Q", v)[0]
    if typ in ("float", "fixed32") and wt == 5:
        return struct.unpack("<f" if typ == "float" else "<I", v)[0]
    if typ in _SIGNED32:
        return _signed(v, 32)
    if typ in ("int64", "sint64"):
        return _signed(v, 64)
    return int(v)


def _packed(typ: str, data: bytes) -> list[Any]:
    out, i = [], 0
    while i < len(data):
        v, i = _varint(data, i)
        out.append(_scalar(typ, 0, v))
    return out


def _special(name: str, raw: bytes) -> tuple[bool, Any]:
    if name in (_META + "Time", _META + "MicroTime"):
        f = {n: v for n, _, v in _fields(raw)}
        secs, nanos = _signed(f.get(1, 0), 64), int(f.get(2, 0))
        if not secs and not nanos:
            return True, None
        t = dt.datetime.fromtimestamp(secs, dt.UTC)
        if name.endswith("MicroTime"):
            return True, t.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
        return True, t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if name == _META + "Duration":
        f = {n: v for n, _, v in _fields(raw)}
        return True, f"{_signed(f.get(1, 0), 64) / 1e9:g}s"
    if name == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        f = {n: v for n, _, v in _fields(raw)}
        return True, bytes(f.get(1, b"")).decode()
    if name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        f = {n: v for n, _, v in _fields(raw)}
        return True, (bytes(f.get(3, b"")).decode() if f.get(1, 0) == 1 else _signed(f.get(2, 0), 32))
    if name in ("k8s.io.apimachinery.pkg.runtime.RawExtension", _META + "FieldsV1"):
        f = {n: v for n, _, v in _fields(raw)}
        data = bytes(f.get(1, b""))
        try:
            return True, json.loads(data) if data else None
        except ValueError:
            return True, base64.b64encode(data).decode()
    return False, None


def decode_message(raw: bytes, name: str) -> Any:
    """One message of type ``name`` as its JSON value."""
    special, value = _special(name, raw)
    if special:
        return value
    table = messages().get(name)
    if table is None:
        raise ProtobufError(f"protobuf: unknown message type {name}")
    out: dict[str, Any] = {}
    for num, wt, v in _fields(raw):
        f = table.get(str(num))
        if f is None:
            continue  # a field newer than the tables: dropped, as an unknown JSON field is
        fname, typ, label = f[0], f[1], f[2]
        if label == 3:
            entry = {n: (w, x) for n, w, x in _fields(bytes(v))}
            k = _convert(f[1], *entry[1]) if 1 in entry else ""
            val = _convert(f[3], *entry[2]) if 2 in entry else _empty(f[3])
            out.setdefault(fname, {})[k] = val
            continue
        if label == 2:
            items = _packed(typ, bytes(v)) if wt == 2 and typ in _VARINTS else [_convert(typ, wt, v)]
            out.setdefault(fname, []).extend(items)
            continue
        val = _convert(typ, wt, v)
        if label == 4 and isinstance(val, dict):
            out.update(val)
            continue
        if val is None or (val in ("", 0, False) and not isinstance(val, dict) and fname not in KEEP_ZERO):
            continue
        out[fname] = val
    return out


def _empty(typ: str) -> Any:
    return "" if typ in ("string", "bytes") else ({} if typ.startswith("k8s.io.") else 0)


def _convert(typ: str, wt: int, v: Any) -> Any:
    if typ.startswith("k8s.io."):
        return decode_message(bytes(v), typ)
    return _scalar(typ, wt, v)


def decode(body: bytes) -> dict[str, Any]:
    """A Kubernetes protobuf request body as the object's JSON form (a 400 if malformed)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("protobuf body without the Kubernetes envelope (k8s\\x00)")
    try:
        env = {n: v for n, _, v in _fields(body[len(MAGIC) :])}
        tm = {n: bytes(v).decode() for n, _, v in _fields(bytes(env.get(1, b"")))}
        api_version, kind = tm.get(1, ""), tm.get(2, "")
        group, _, version = api_version.rpartition("/")
        pkg = f"k8s.io.api.{group.split('.')[0] if group else 'core'}.{version}"
        obj = decode_message(bytes(env.get(2, b"")), f"{pkg}.{kind}")
    except (ValueError, UnicodeDecodeError, KeyError, struct.error) as exc:
        raise ProtobufError(f"the request body is not valid Kubernetes protobuf: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtobufError("the protobuf body is not an object")
    return {"apiVersion": api_version, "kind": kind, **obj}
