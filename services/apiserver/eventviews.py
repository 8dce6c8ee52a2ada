"""Resources served as a view of another stored resource (``events.k8s.io/v1`` Events are
the stored core/v1 Events): what to read and write, and how objects and field selectors
are converted on the way in and out. Identity for every other resource."""

from __future__ import annotations

from typing import Any

from edgebus.objects import EVENTS, Resource, stored
from edgebus.objects import eventsv1
from edgebus.objects.resources import is_view


def storage(r: Resource) -> Resource:
    return stored(r)


def out(r: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """A stored object as ``r`` serves it."""
    return eventsv1.to_v1(obj) if is_view(r) else obj


def into(r: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """An object of ``r`` as it is stored."""
    return eventsv1.to_core(obj) if is_view(r) else obj


def field_selector(r: Resource, expr: str | None) -> str | None:
    if r.plural != EVENTS.plural:
        return expr
    return eventsv1.field_selector(expr, view=is_view(r))
