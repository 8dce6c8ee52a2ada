"""The swagger 2.0 document as kubectl downloads it: ``/openapi/v2`` in protobuf.

kubectl (client-go's discovery) asks ``/openapi/v2`` for
``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and decodes the body as
gnostic's ``openapi.v2.Document``, the format the Kubernetes API server serves. This module
fills that message (the classes generated from ``gnosticpb/openapiv2.proto``) from a swagger
document (a dict), for the parts of swagger the API's document uses: paths, operations,
parameters, responses, definitions (schemas with properties, items, additionalProperties,
required, enum, default, bounds) and ``x-`` vendor extensions, which gnostic carries as YAML
text (JSON is YAML). Numbers and flags that are zero are not written, as with any proto3
field (the Kubernetes API server's document reads the same).
"""

from __future__ import annotations

import functools
import json
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgebus.openapi.gnosticpb import openapiv2_pb2 as pb

#: The response media type (the request asks for ``...spec.v2@v1.0+protobuf``; Go cannot
#: parse an ``@`` in a media type, so the server answers with this spelling).
CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _yaml(msg: pb.Any, value: Any) -> None:
    msg.yaml = json.dumps(value, separators=(",", ":"), sort_keys=True)


def _extensions(out: Any, obj: dict[str, Any]) -> None:
    """``vendor_extension``: a ``NamedAny`` for every ``x-`` key."""
    for k, v in obj.items():
        if k.startswith("x-"):
            _yaml(out.add(name=k).value, v)


def _text(s: Any) -> str:
    return "" if s is None else str(s)


def schema(s: dict[str, Any], out: pb.Schema | None = None) -> pb.Schema:
    out = _messages().Schema() if out is None else out
    out._ref = _text(s.get("$ref"))
    out.format = _text(s.get("format"))
    out.title = _text(s.get("title"))
    out.description = _text(s.get("description"))
    if "default" in s:
        _yaml(out.default, s["default"])
    for key, field in (("maximum", "maximum"), ("minimum", "minimum"), ("multipleOf", "multiple_of")):
        if _number(s.get(key)):
            setattr(out, field, float(s[key]))
    for key, field in (
        ("maxLength", "max_length"),
        ("minLength", "min_length"),
        ("maxItems", "max_items"),
        ("minItems", "min_items"),
        ("maxProperties", "max_properties"),
        ("minProperties", "min_properties"),
    ):
        if isinstance(s.get(key), int) and not isinstance(s[key], bool):
            setattr(out, field, s[key])
    out.pattern = _text(s.get("pattern"))
    out.unique_items = bool(s.get("uniqueItems"))
    out.exclusive_maximum = bool(s.get("exclusiveMaximum"))
    out.exclusive_minimum = bool(s.get("exclusiveMinimum"))
    out.read_only = bool(s.get("readOnly"))
    out.required.extend(str(r) for r in s.get("required") or [])
    for v in s.get("enum") or []:
        _yaml(out.enum.add(), v)
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        schema(ap, out.additional_properties.schema)
    elif isinstance(ap, bool):
        out.additional_properties.boolean = ap
    t = s.get("type")
    if t:
        out.type.value.extend(t if isinstance(t, list) else [t])
    items = s.get("items")
    if isinstance(items, dict):
        schema(items, out.items.schema.add())
    for x in s.get("allOf") or []:
        schema(x, out.all_of.add())
    props = s.get("properties")
    if isinstance(props, dict):
        out.properties.SetInParent()
        for k, v in props.items():
            schema(v, out.properties.additional_properties.add(name=k).value)
    _extensions(out.vendor_extension, s)
    return out


def _parameter(p: dict[str, Any], out: pb.ParametersItem) -> None:
    param = out.parameter
    if p.get("in") == "body":
        body = param.body_parameter
        body.description, body.name, body.required = _text(p.get("description")), _text(p.get("name")), bool(p.get("required"))
        setattr(body, "in", "body")
        schema(p.get("schema") or {}, body.schema)
        _extensions(body.vendor_extension, p)
        return
    sub = param.non_body_parameter.path_parameter_sub_schema if p.get("in") == "path" else param.non_body_parameter.query_parameter_sub_schema
    sub.required, sub.description, sub.name = bool(p.get("required")), _text(p.get("description")), _text(p.get("name"))
    sub.type, sub.format, sub.unique_items = _text(p.get("type")), _text(p.get("format")), bool(p.get("uniqueItems"))
    setattr(sub, "in", "path" if p.get("in") == "path" else "query")
    _extensions(sub.vendor_extension, p)


def _operation(op: dict[str, Any], out: pb.Operation) -> None:
    out.tags.extend(op.get("tags") or [])
    out.summary, out.description, out.operation_id = _text(op.get("summary")), _text(op.get("description")), _text(op.get("operationId"))
    out.produces.extend(op.get("produces") or [])
    out.consumes.extend(op.get("consumes") or [])
    for p in op.get("parameters") or []:
        _parameter(p, out.parameters.add())
    out.responses.SetInParent()
    for code, r in (op.get("responses") or {}).items():
        resp = out.responses.response_code.add(name=str(code)).value.response
        resp.description = _text(r.get("description"))
        if isinstance(r.get("schema"), dict):
            schema(r["schema"], resp.schema.schema)
    out.schemes.extend(op.get("schemes") or [])
    out.deprecated = bool(op.get("deprecated"))
    _extensions(out.vendor_extension, op)


@functools.cache
def _messages() -> ModuleType:
    """The generated module, loaded on the first request (an API server whose setup did not
    generate it still starts; only this document fails, saying why)."""
    try:
        from edgebus.openapi.gnosticpb import openapiv2_pb2
    except ImportError as exc:
        raise RuntimeError(f"gnostic's OpenAPI v2 messages are not generated (run ./dev setup, or python -m edgebus.protogen): {exc}") from exc
    return openapiv2_pb2


def document_message(doc: dict[str, Any]) -> pb.Document:
    out = _messages().Document(swagger=_text(doc.get("swagger", "2.0")))
    info = doc.get("info") or {}
    out.info.title, out.info.version, out.info.description = _text(info.get("title")), _text(info.get("version")), _text(info.get("description"))
    out.paths.SetInParent()
    for path, item in (doc.get("paths") or {}).items():
        pi = out.paths.path.add(name=path).value
        for m in _METHODS:
            if m in item:
                _operation(item[m], getattr(pi, m))
        for p in item.get("parameters") or []:
            _parameter(p, pi.parameters.add())
        _extensions(pi.vendor_extension, item)
    out.definitions.SetInParent()
    for name, s in (doc.get("definitions") or {}).items():
        schema(s, out.definitions.additional_properties.add(name=name).value)
    _extensions(out.vendor_extension, doc)
    return out


def document(doc: dict[str, Any]) -> bytes:
    """The serialized ``openapi.v2.Document`` of a swagger document."""
    return bytes(document_message(doc).SerializeToString())
