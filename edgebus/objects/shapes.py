"""Narrowing helpers for decoded JSON: a field that should be a mapping or a list but may be
missing or of another shape reads as an empty one, and the type checker knows its type."""

from __future__ import annotations

from typing import Any


def as_dict(value: object) -> dict[str, Any]:
    """``value`` if it is a dict, else a new empty dict."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """``value`` if it is a list, else a new empty list."""
    return value if isinstance(value, list) else []
