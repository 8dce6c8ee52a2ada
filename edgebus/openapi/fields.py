"""Server-side field validation (the ``fieldValidation`` query parameter), as the
Kubernetes API server does it for built-in kinds and CRDs with a structural schema.

A field the kind's schema does not declare is *unknown*. Whatever the directive, unknown
fields are dropped before the object is stored (Kubernetes' decoders drop them too);
``fieldValidation`` says what the client hears about them:

* ``Strict`` (what kubectl sends by default): the request fails, ``400 BadRequest``:
  ``Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagee"``;
* ``Warn`` (the default without the parameter): it succeeds with a ``Warning`` header per field;
* ``Ignore``: it succeeds silently.

Duplicate fields in the JSON body are treated alike (``duplicate field "metadata.name"``;
the last value wins). A schema node marked ``x-kubernetes-preserve-unknown-fields``, or an
object schema without ``properties`` (free-form, like ``metadata.managedFields[].fieldsV1``),
accepts anything below it. Pure functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from edgebus.errors import BadRequest

IGNORE, WARN, STRICT = "Ignore", "Warn", "Strict"
DIRECTIVES = (IGNORE, WARN, STRICT)


def directive(value: str | None) -> str:
    """The ``fieldValidation`` query parameter, checked (empty: ``Warn``)."""
    if value in (None, ""):
        return WARN
    if value not in DIRECTIVES:
        raise BadRequest(f'invalid fieldValidation "{value}": must be one of {", ".join(DIRECTIVES)}')
    return value


def _resolve(defs: dict[str, Any], s: Any) -> dict[str, Any]:
    for _ in range(32):
        if not isinstance(s, dict):
            return {}
        ref = s.get("$ref")
        if not isinstance(ref, str):
            return s
        s = defs.get(ref.rsplit("/", 1)[1], {})
    return {}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass
class Unknown:
    """The unknown fields found in an object: their paths, and where to drop them."""

    paths: list[str] = field(default_factory=list)
    spots: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    def prune(self) -> None:
        for parent, key in self.spots:
            parent.pop(key, None)


def unknown_fields(defs: dict[str, Any], definition: str, obj: Any) -> Unknown:
    """Every field of ``obj`` that the schema ``definition`` does not declare."""
    found = Unknown()

    def walk(s: Any, v: Any, path: str) -> None:
        s = _resolve(defs, s)
        if not s or s.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(v, dict):
            props = s.get("properties")
            ap = s.get("additionalProperties")
            if isinstance(props, dict):
                for k, sub in list(v.items()):
                    if k in props:
                        walk(props[k], sub, _join(path, k))
                    elif isinstance(ap, dict):
                        walk(ap, sub, _join(path, k))
                    elif ap is not True:
                        found.paths.append(_join(path, k))
                        found.spots.append((v, k))
            elif isinstance(ap, dict):
                for k, sub in v.items():
                    walk(ap, sub, _join(path, k))
        elif isinstance(v, list) and isinstance(s.get("items"), dict):
            for i, sub in enumerate(v):
                walk(s["items"], sub, f"{path}[{i}]")

    walk({"$ref": f"#/definitions/{definition}"}, obj, "")
    return found


# -- duplicate fields in a JSON body -----------------------------------------------------


def loads_with_duplicates(body: bytes | str) -> tuple[Any, list[str]]:
    """Decode JSON, also returning the paths of keys that occur twice in one object (the
    last value wins, as in Go). Raises ``ValueError`` on malformed JSON."""
    dups: list[tuple[dict[str, Any], str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in pairs:
            if k in d:
                dups.append((d, k))
            d[k] = v
        return d

    def reject(c: str) -> Any:
        raise ValueError(f"{c} is not valid JSON")

    obj = json.loads(body, object_pairs_hook=hook, parse_constant=reject)
    if not dups:
        return obj, []
    where: dict[int, str] = {}

    def index(v: Any, path: str) -> None:
        if isinstance(v, dict):
            where[id(v)] = path
            for k, sub in v.items():
                index(sub, _join(path, k))
        elif isinstance(v, list):
            for i, sub in enumerate(v):
                index(sub, f"{path}[{i}]")

    index(obj, "")
    return obj, [_join(where.get(id(d), ""), k) for d, k in dups]


def problems(unknown: list[str], duplicate: list[str]) -> list[str]:
    return [f'unknown field "{p}"' for p in unknown] + [f'duplicate field "{p}"' for p in duplicate]


def strict_error(kind: str, version: str, found: list[str]) -> BadRequest:
    return BadRequest(f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {", ".join(found)}')


#: a warning's text, at most this many characters (Kubernetes truncates warnings too)
MAX_WARNING = 1024


def warning_header(message: str) -> str:
    """A ``Warning`` header value (RFC 7234 form, as the Kubernetes API server sends it).

    Characters that are not printable (a line break would end the header) become spaces, as
    Kubernetes does; the text goes on the wire as UTF-8, as Go sends it - returned here as
    the Latin-1 string of those bytes, since HTTP header values are Latin-1 to the server."""
    text = "".join(ch if ch.isprintable() else " " for ch in message[:MAX_WARNING])
    value = '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return value.encode("utf-8").decode("latin-1")
