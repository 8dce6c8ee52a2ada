"""``events.k8s.io/v1`` Events as a view of the stored core/v1 Events (pure).

Kubernetes stores one Event object and serves it in both versions; the field mapping is
its own (``pkg/apis/events/v1`` conversions): ``regarding`` = ``involvedObject``,
``note`` = ``message``, ``reportingController`` = ``reportingComponent``,
``deprecatedSource`` / ``deprecatedFirstTimestamp`` / ``deprecatedLastTimestamp`` /
``deprecatedCount`` = ``source`` / ``firstTimestamp`` / ``lastTimestamp`` / ``count``.
Field selectors name the view's fields and are translated to the stored ones.
"""

from __future__ import annotations

import copy
from typing import Any

from edgebus.objects.resources import EVENTS, EVENTS_V1
from edgebus.objects.selectors import parse_field_selector

#: (events.k8s.io/v1 field, core/v1 field); the rest (reason, type, action, related,
#: series, eventTime, reportingInstance, metadata) is the same in both
FIELDS = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)


def to_v1(core: dict[str, Any]) -> dict[str, Any]:
    """A stored (core/v1) Event as an ``events.k8s.io/v1`` Event."""
    out = copy.deepcopy(core)
    for new, old in FIELDS:
        if old in out:
            out[new] = out.pop(old)
    out["apiVersion"] = EVENTS_V1.api_version
    out["kind"] = "Event"
    return out


def to_core(v1: dict[str, Any]) -> dict[str, Any]:
    """An ``events.k8s.io/v1`` Event as the core/v1 Event it is stored as."""
    out = copy.deepcopy(v1)
    for new, old in FIELDS:
        if new in out:
            out[old] = out.pop(new)
    out["apiVersion"] = EVENTS.api_version
    out["kind"] = "Event"
    return out


#: field labels of core/v1 Events that are not plain paths (Kubernetes' ``source``)
CORE_ALIASES = {"source": "source.component"}


def field_selector(expr: str | None, *, view: bool = True) -> str | None:
    """An Event field selector spelled on the stored fields: ``source`` is
    ``source.component``; for the view (``view``) its field names become the stored ones."""
    if not expr:
        return expr
    mapping = {**CORE_ALIASES, **(dict(FIELDS) if view else {})}
    parts = []
    for path, op, value in parse_field_selector(expr):
        head, _, rest = path.partition(".")
        if head in mapping:
            path = mapping[head] + (f".{rest}" if rest else "")
        parts.append(f"{path}{'!=' if op == '!=' else '='}{value}")
    return ",".join(parts)
