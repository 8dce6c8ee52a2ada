"""``metav1.LabelSelector`` (``matchLabels`` and ``matchExpressions``): matching, checking
and the string form Kubernetes prints (``app=web,tier in (a,b)``). Pure, no I/O."""

from __future__ import annotations

from typing import Any

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _labels(obj_or_labels: dict[str, Any]) -> dict[str, Any]:
    if "metadata" in obj_or_labels and isinstance(obj_or_labels.get("metadata"), dict):
        return obj_or_labels["metadata"].get("labels") or {}
    return obj_or_labels


def matches(selector: dict[str, Any] | None, obj_or_labels: dict[str, Any]) -> bool:
    """Does the selector select these labels (or this object's labels)? A nil selector
    selects nothing and an empty one everything, as in Kubernetes."""
    if selector is None or not isinstance(selector, dict):
        return False
    labels = _labels(obj_or_labels)
    if not isinstance(labels, dict):
        labels = {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        if not isinstance(e, dict):
            return False
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and (labels.get(key) if isinstance(key, str) else None) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in OPERATORS:
            return False
    return True


def is_empty(selector: dict[str, Any] | None) -> bool:
    return not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def format(selector: dict[str, Any] | None) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` for an empty selector."""
    if not isinstance(selector, dict) or is_empty(selector):
        return "<none>"
    return to_string(selector)


def to_string(selector: dict[str, Any] | None) -> str:
    """The selector as a label-selector query string (``?labelSelector=``, Scale status)."""
    if not isinstance(selector, dict):
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        if not isinstance(e, dict):
            continue
        key, op, values = e.get("key"), e.get("operator"), sorted(e.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def format_labels(labels: dict[str, Any] | None) -> str:
    """``labels.FormatLabels``: ``k=v,k2=v2`` sorted, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
