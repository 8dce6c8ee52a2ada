"""Field validation on writes (``?fieldValidation=Ignore|Warn|Strict``): the request body is
decoded noting duplicate keys, the object about to be written is checked against its
kind's schema (:func:`edgebus.openapi.check_fields`: unknown fields dropped, reported as
``Warning`` headers or, with ``Strict``, a ``400``), and warnings go out as headers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from edgebus import openapi
from edgebus.openapi import protobuf
from edgebus.errors import BadRequest
from edgebus.objects import Resource
from edgebus.objectstore import TooLarge
from services.apiserver import logic


#: the largest request body taken (as the Kubernetes API server: 3 MiB)
MAX_BODY = 3 << 20


async def read_body(request: Request) -> bytes:
    """The request body, at most :data:`MAX_BODY` bytes (413 beyond, without reading it all)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge(f"the request body is too large: {declared} bytes, at most {MAX_BODY}")
    out = bytearray()
    async for chunk in request.stream():
        out += chunk
        if len(out) > MAX_BODY:
            raise TooLarge(f"the request body is too large: more than {MAX_BODY} bytes")
    return bytes(out)


def parse_body(raw: bytes, content_type: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The request's JSON object and the paths of its duplicate keys. A Kubernetes protobuf
    body (kubectl 1.32+ sends its imperative creates so) is decoded to the same object; CBOR
    is a 415."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct == protobuf.CONTENT_TYPE:
        return protobuf.decode(raw), []
    if ct in ("application/cbor", "application/apply-patch+cbor"):
        raise logic.UnsupportedMediaType(f'the body of the request was in an unknown format - accepted media types include: application/json, {protobuf.CONTENT_TYPE} (not "{ct}")')
    return logic.parse_object(raw), duplicates(raw)


def duplicates(raw: bytes) -> list[str]:
    """Duplicate keys of a (patch) body; malformed JSON is reported by the patch itself."""
    try:
        return openapi.loads_with_duplicates(raw)[1]
    except (ValueError, UnicodeDecodeError):
        return []


def reject_dry_run(request: Request, options: dict[str, Any] | None = None) -> None:
    """``dryRun`` (query, or a delete's DeleteOptions) is not implemented: refuse it rather
    than write (``kubectl apply --dry-run=server``, ``kubectl diff`` and ``kubectl delete
    --dry-run=server`` would otherwise change the object)."""
    if request.query_params.get("dryRun") or (options or {}).get("dryRun"):
        raise BadRequest("dryRun is not supported by this server: nothing was changed (use --dry-run=client)")


def dry_run(request: Request, options: dict[str, Any] | None = None) -> bool:
    """``dryRun=All`` (query, or a delete's DeleteOptions): check everything, store nothing
    (``kubectl apply --dry-run=server``, ``kubectl diff``). Other values are refused."""
    values = list(request.query_params.getlist("dryRun"))
    opt = (options or {}).get("dryRun")
    if isinstance(opt, list):
        values += [str(v) for v in opt]
    elif opt:
        values.append(str(opt))
    for v in values:
        if v != "All":
            raise BadRequest(f'unsupported dry run value "{v}": the only supported value is "All"')
    return bool(values)


def check(request: Request, resource: Resource, obj: dict[str, Any], dups: list[str], *, current: dict[str, Any] | None = None) -> list[str]:
    dry_run(request)
    mode = openapi.directive(request.query_params.get("fieldValidation"))
    return openapi.check_fields(resource, obj, mode, duplicates=dups, current=current)


def respond(body: dict[str, Any], code: int = 200, warnings: list[str] | None = None) -> JSONResponse:
    resp = JSONResponse(body, status_code=code)
    for w in warnings or []:
        resp.headers.append("Warning", openapi.warning_header(w))
    return resp
