"""The swagger 2.0 document as kubectl downloads it: ``/openapi/v2`` in protobuf.

kubectl (client-go's discovery) asks ``/openapi/v2`` for
``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and decodes the body as
gnostic's ``openapi.v2.Document`` (``openapiv2/OpenAPIv2.proto`` of google/gnostic, the
format the Kubernetes API server serves). This module encodes a swagger document (a dict)
into that message, for the parts of swagger the API's document uses: paths, operations,
parameters, responses, definitions (schemas with properties, items, additionalProperties,
required, enum, default) and ``x-`` vendor extensions, which gnostic carries as YAML text
(JSON is YAML).

The protobuf wire format is written directly (field numbers from the .proto, noted per
message below): length-delimited strings and messages, varint booleans, fixed64 doubles.
"""

from __future__ import annotations

import json
import struct
from typing import Any

#: The response media type (the request asks for ``...spec.v2@v1.0+protobuf``; Go cannot
#: parse an ``@`` in a media type, so the server answers with this spelling).
CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, s: Any) -> bytes:
    return _bytes(field, str(s).encode()) if s not in (None, "") else b""


def _strs(field: int, items: Any) -> bytes:
    return b"".join(_bytes(field, str(s).encode()) for s in items or [])


def _msg(field: int, data: bytes) -> bytes:
    return _bytes(field, data)


def _bool(field: int, v: Any) -> bytes:
    return _varint(field << 3) + b"\x01" if v else b""


def _int(field: int, v: Any) -> bytes:
    return _varint(field << 3) + _varint(int(v)) if isinstance(v, int) and not isinstance(v, bool) else b""


def _double(field: int, v: Any) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<d", float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else b""


def _any(value: Any) -> bytes:
    """``Any``: value = 1 (google.protobuf.Any, unused), yaml = 2."""
    return _str(2, json.dumps(value, separators=(",", ":"), sort_keys=True))


def _extensions(field: int, obj: dict[str, Any]) -> bytes:
    """Repeated ``NamedAny`` (name = 1, value = 2) for every ``x-`` key."""
    return b"".join(_msg(field, _str(1, k) + _msg(2, _any(v))) for k, v in obj.items() if k.startswith("x-"))


def schema(s: dict[str, Any]) -> bytes:
    """``Schema``: _ref 1, format 2, title 3, description 4, default 5, maximum 7, minimum 9,
    max_length 11, min_length 12, pattern 13, max_items 14, min_items 15, unique_items 16,
    required 19, enum 20, additional_properties 21, type 22, items 23, all_of 24,
    properties 25, read_only 27, vendor_extension 31."""
    out = _str(1, s.get("$ref")) + _str(2, s.get("format")) + _str(3, s.get("title")) + _str(4, s.get("description"))
    if "default" in s:
        out += _msg(5, _any(s["default"]))
    out += _double(7, s.get("maximum")) + _double(9, s.get("minimum"))
    out += _int(11, s.get("maxLength")) + _int(12, s.get("minLength")) + _str(13, s.get("pattern"))
    out += _int(14, s.get("maxItems")) + _int(15, s.get("minItems")) + _bool(16, s.get("uniqueItems"))
    out += _strs(19, s.get("required"))
    out += b"".join(_msg(20, _any(v)) for v in s.get("enum") or [])
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):  # AdditionalPropertiesItem: schema 1 | boolean 2
        out += _msg(21, _msg(1, schema(ap)))
    elif isinstance(ap, bool):
        out += _msg(21, _varint(2 << 3) + (b"\x01" if ap else b"\x00"))
    t = s.get("type")
    if t:  # TypeItem: value 1 (repeated)
        out += _msg(22, _strs(1, t if isinstance(t, list) else [t]))
    items = s.get("items")
    if isinstance(items, dict):  # ItemsItem: schema 1 (repeated)
        out += _msg(23, _msg(1, schema(items)))
    out += b"".join(_msg(24, schema(x)) for x in s.get("allOf") or [])
    props = s.get("properties")
    if isinstance(props, dict):  # Properties: additional_properties 1 = repeated NamedSchema (name 1, value 2)
        out += _msg(25, b"".join(_msg(1, _str(1, k) + _msg(2, schema(v))) for k, v in props.items()))
    out += _bool(27, s.get("readOnly"))
    return out + _extensions(31, s)


def _parameter(p: dict[str, Any]) -> bytes:
    """``ParametersItem``: parameter 1 = ``Parameter`` (body_parameter 1 | non_body_parameter 2)."""
    if p.get("in") == "body":
        # BodyParameter: description 1, name 2, in 3, required 4, schema 5
        body = _str(1, p.get("description")) + _str(2, p.get("name")) + _str(3, "body") + _bool(4, p.get("required")) + _msg(5, schema(p.get("schema") or {}))
        return _msg(1, _msg(1, body))
    if p.get("in") == "path":
        # PathParameterSubSchema: required 1, in 2, description 3, name 4, type 5, format 6, unique_items 19
        sub = _bool(1, p.get("required")) + _str(2, "path") + _str(3, p.get("description")) + _str(4, p.get("name")) + _str(5, p.get("type")) + _str(6, p.get("format")) + _bool(19, p.get("uniqueItems"))
        return _msg(1, _msg(2, _msg(4, sub)))
    # QueryParameterSubSchema: required 1, in 2, description 3, name 4, type 6, format 7, unique_items 20
    sub = _bool(1, p.get("required")) + _str(2, "query") + _str(3, p.get("description")) + _str(4, p.get("name")) + _str(6, p.get("type")) + _str(7, p.get("format")) + _bool(20, p.get("uniqueItems"))
    return _msg(1, _msg(2, _msg(3, sub)))


def _responses(rs: dict[str, Any]) -> bytes:
    """``Responses``: response_code 1 = repeated NamedResponseValue (name 1, value 2 =
    ``ResponseValue``: response 1 = ``Response`` (description 1, schema 2 = ``SchemaItem``: schema 1))."""
    out = b""
    for code, r in rs.items():
        resp = _str(1, r.get("description"))
        if isinstance(r.get("schema"), dict):
            resp += _msg(2, _msg(1, schema(r["schema"])))
        out += _msg(1, _str(1, code) + _msg(2, _msg(1, resp)))
    return out


def _operation(op: dict[str, Any]) -> bytes:
    """``Operation``: tags 1, summary 2, description 3, operation_id 5, produces 6, consumes 7,
    parameters 8, responses 9, schemes 10, deprecated 11, vendor_extension 13."""
    out = _strs(1, op.get("tags")) + _str(2, op.get("summary")) + _str(3, op.get("description")) + _str(5, op.get("operationId"))
    out += _strs(6, op.get("produces")) + _strs(7, op.get("consumes"))
    out += b"".join(_msg(8, _parameter(p)) for p in op.get("parameters") or [])
    out += _msg(9, _responses(op.get("responses") or {}))
    out += _strs(10, op.get("schemes")) + _bool(11, op.get("deprecated"))
    return out + _extensions(13, op)


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(item: dict[str, Any]) -> bytes:
    """``PathItem``: get 2, put 3, post 4, delete 5, options 6, head 7, patch 8, parameters 9,
    vendor_extension 10."""
    out = b"".join(_msg(_METHODS[m], _operation(item[m])) for m in _METHODS if m in item)
    out += b"".join(_msg(9, _parameter(p)) for p in item.get("parameters") or [])
    return out + _extensions(10, item)


def document(doc: dict[str, Any]) -> bytes:
    """``Document``: swagger 1, info 2 (title 1, version 2, description 3), paths 8 (path 2 =
    repeated NamedPathItem: name 1, value 2), definitions 9 (additional_properties 1 =
    repeated NamedSchema), vendor_extension 16."""
    info = doc.get("info") or {}
    out = _str(1, doc.get("swagger", "2.0")) + _msg(2, _str(1, info.get("title")) + _str(2, info.get("version")) + _str(3, info.get("description")))
    out += _msg(8, b"".join(_msg(2, _str(1, path) + _msg(2, _path_item(item))) for path, item in (doc.get("paths") or {}).items()))
    out += _msg(9, b"".join(_msg(1, _str(1, name) + _msg(2, schema(s))) for name, s in (doc.get("definitions") or {}).items()))
    return out + _extensions(16, doc)
