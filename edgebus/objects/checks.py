"""What every object check builds on: the causes a validation collects, the name and label
rules of Kubernetes, and the registry of per-resource checks.

Every problem is collected as a *cause* (``field``, ``reason``, ``message``) and raised
together as :class:`edgebus.errors.Invalid`, whose message reads like the Kubernetes one:
``Pod "web" is invalid: spec.containers[0].image: Required value``.

The module that knows a kind registers its check here (:func:`checks`);
:func:`edgebus.objects.validation.validate` runs the common metadata checks and then the
registered one, so validation knows no kind and the kinds never import it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from edgebus.errors import Invalid

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class Causes:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, reason: str, message: str) -> None:
        self.items.append({"field": field, "reason": reason, "message": message})

    def required(self, field: str) -> None:
        self.add(field, "FieldValueRequired", "Required value")

    def invalid(self, field: str, value: Any, detail: str) -> None:
        self.add(field, "FieldValueInvalid", f"Invalid value: {_show(value)}: {detail}")

    def unsupported(self, field: str, value: Any, allowed: tuple[str, ...]) -> None:
        opts = ", ".join(f'"{a}"' for a in allowed)
        self.add(field, "FieldValueNotSupported", f"Unsupported value: {_show(value)}: supported values: {opts}")

    def duplicate(self, field: str, value: Any) -> None:
        self.add(field, "FieldValueDuplicate", f"Duplicate value: {_show(value)}")

    def type_error(self, field: str, expected: str, value: Any) -> None:
        self.add(field, "FieldValueTypeInvalid", f"Invalid value: {_show(value)}: must be {expected}")

    def raise_if_any(self, kind: str, name: str) -> None:
        if not self.items:
            return
        detail = "; ".join(f"{c['field']}: {c['message']}" for c in self.items)
        if len(self.items) > 1:
            detail = f"[{detail}]"
        raise Invalid(
            f'{kind} "{name}" is invalid: {detail}',
            details={"name": name, "kind": kind, "causes": self.items},
        )


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v) if not isinstance(v, (dict, list)) else type(v).__name__


def check_dns_label(c: Causes, field: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        c.required(field)
    elif len(value) > 63 or not DNS1123_LABEL.fullmatch(value):
        c.invalid(field, value, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")


def check_dns_subdomain(c: Causes, field: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        c.required(field)
    elif len(value) > 253 or not DNS1123_SUBDOMAIN.fullmatch(value):
        c.invalid(field, value, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")


def check_qualified(c: Causes, field: str, key: str) -> None:
    prefix, sep, name = key.rpartition("/")
    if sep and not prefix:
        c.invalid(field, key, "prefix part must be non-empty")
        return
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        c.invalid(field, key, "prefix part must be a DNS-1123 subdomain")
        return
    if not name or len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        c.invalid(field, key, "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")


def check_string_map(c: Causes, field: str, m: Any, *, labels: bool) -> None:
    if m is None:
        return
    if not isinstance(m, dict):
        c.type_error(field, "a map of strings", m)
        return
    for k, v in m.items():
        if not isinstance(k, str):
            c.type_error(field, "a map with string keys", k)
            continue
        check_qualified(c, field, k)
        if not isinstance(v, str):
            c.type_error(f"{field}[{k}]", "a string", v)
        elif labels and (len(v) > 63 or not _LABEL_VALUE.fullmatch(v)):
            c.invalid(f"{field}[{k}]", v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")


# -- the registry -------------------------------------------------------------------------

#: a kind's own checks of an object (after the common metadata checks)
KindCheck = Callable[[Causes, dict[str, Any]], None]
#: the rule for ``metadata.name`` (``(causes, field, value)``)
NameCheck = Callable[[Causes, str, Any], None]

_KIND_CHECKS: dict[str, KindCheck] = {}
_NAME_CHECKS: dict[str, NameCheck] = {}


def checks(*plurals: str, name: NameCheck | None = None) -> Callable[[KindCheck], KindCheck]:
    """Register the decorated function as the check of the resources ``plurals`` (and
    ``name`` as the rule of their ``metadata.name``; a DNS subdomain otherwise)."""

    def register(fn: KindCheck) -> KindCheck:
        for plural in plurals:
            if plural in _KIND_CHECKS:
                raise ValueError(f"{plural}: a check is already registered ({_KIND_CHECKS[plural].__module__}.{_KIND_CHECKS[plural].__name__})")
            _KIND_CHECKS[plural] = fn
            if name is not None:
                register_name_rule(plural, name)
        return fn

    return register


def register_name_rule(plural: str, rule: NameCheck) -> None:
    """The rule of ``metadata.name`` for ``plural`` (a kind without checks of its own)."""
    if _NAME_CHECKS.get(plural, rule) is not rule:
        raise ValueError(f"{plural}: a name rule is already registered")
    _NAME_CHECKS[plural] = rule


def kind_check(plural: str) -> KindCheck | None:
    return _KIND_CHECKS.get(plural)


def name_rule(plural: str) -> NameCheck:
    return _NAME_CHECKS.get(plural, check_dns_subdomain)


def registered() -> frozenset[str]:
    """The plurals with a check of their own."""
    return frozenset(_KIND_CHECKS)
