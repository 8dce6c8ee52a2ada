"""OpenAPI for the Kubernetes-style API: the documents kubectl downloads (``/openapi/v2``,
``/openapi/v3``) and server-side field validation, both from the same schema definitions.

The definitions are Kubernetes' own (the ``core/v1`` kinds and what they reference, release
v1.30, vendored from the ``kubernetes-validate`` package by :mod:`edgebus.openapi.build`)
plus the devices group's (:mod:`edgebus.openapi.devices`). Paths are generated for the
resources the API serves (:mod:`edgebus.openapi.spec`).
"""

from __future__ import annotations

import functools
from typing import Any

from edgebus.objects import Resource
from edgebus.openapi import gnostic
from edgebus.openapi.fields import STRICT, WARN, Unknown, directive, loads_with_duplicates, problems, strict_error, unknown_fields, warning_header
from edgebus.openapi.spec import definitions, resource_definition, v2_document, v3_document, v3_hash, v3_root

__all__ = [
    "STRICT",
    "WARN",
    "check_fields",
    "definitions",
    "directive",
    "loads_with_duplicates",
    "resource_definition",
    "v2_document",
    "v2_protobuf",
    "v3_document",
    "v3_hash",
    "v3_root",
    "warning_header",
]


@functools.cache
def v2_protobuf() -> bytes:
    """``/openapi/v2`` as gnostic protobuf (what kubectl asks for)."""
    return gnostic.document(v2_document())


def check_fields(
    resource: Resource,
    obj: dict[str, Any],
    mode: str,
    *,
    duplicates: list[str] | tuple[str, ...] = (),
    current: dict[str, Any] | None = None,
) -> list[str]:
    """Apply field validation to ``obj`` (about to be written): drop its unknown fields and
    return the warnings to send (``Warn``), or raise ``BadRequest`` (``Strict``).

    With ``current`` (a patch's target), fields that were already unknown in the stored
    object are neither reported nor dropped: only what the request adds is judged."""
    name = resource_definition(resource)
    found = unknown_fields(definitions(), name, obj) if name else Unknown()
    if current is not None and name and found.paths:
        old = set(unknown_fields(definitions(), name, current).paths)
        keep = [i for i, p in enumerate(found.paths) if p not in old]
        found = Unknown([found.paths[i] for i in keep], [found.spots[i] for i in keep])
    msgs = problems(found.paths, list(duplicates))
    if msgs and mode == STRICT:
        raise strict_error(resource.kind, resource.version, msgs)
    found.prune()
    return msgs if mode == WARN else []
