"""Field validation on writes (``?fieldValidation=Ignore|Warn|Strict``): the request body is
decoded noting duplicate keys, the object about to be written is checked against its
kind's schema (:func:`edgebus.openapi.check_fields`: unknown fields dropped, reported as
``Warning`` headers or, with ``Strict``, a ``400``), and warnings go out as headers."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from edgebus import openapi
from edgebus.errors import BadRequest
from edgebus.objects import Resource
from services.apiserver import logic


def parse_body(raw: bytes) -> tuple[dict[str, Any], list[str]]:
    """The request's JSON object and the paths of its duplicate keys."""
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


def check(request: Request, resource: Resource, obj: dict[str, Any], dups: list[str], *, current: dict[str, Any] | None = None) -> list[str]:
    reject_dry_run(request)
    mode = openapi.directive(request.query_params.get("fieldValidation"))
    return openapi.check_fields(resource, obj, mode, duplicates=dups, current=current)


def respond(body: dict[str, Any], code: int = 200, warnings: list[str] | None = None) -> JSONResponse:
    resp = JSONResponse(body, status_code=code)
    for w in warnings or []:
        resp.headers.append("Warning", openapi.warning_header(w))
    return resp
