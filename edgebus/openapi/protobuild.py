"""Regenerate the vendored Kubernetes protobuf field tables (``k8s-proto.json.gz``).

Source: the ``generated.proto`` files of the ``k8s.io/api`` and ``k8s.io/apimachinery``
modules (the wire format of every built-in kind: message names, field numbers, types). This
keeps, per message, ``{number: [name, type, label]}`` (``label``: ``1`` optional, ``2``
repeated, ``3`` map with the value type, ``4`` an embedded struct inlined in JSON) — the facts a decoder needs, nothing else — and
writes them compressed and sorted::

    python -m edgebus.openapi.protobuild API_DIR APIMACHINERY_DIR   # checkouts of the two modules

Only the group-versions of :data:`edgebus.openapi.build.GROUP_VERSIONS` are read.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path
from typing import Any

from edgebus.openapi.build import GROUP_VERSIONS

OUT = Path(__file__).with_name("k8s-proto.json.gz")
APIMACHINERY = ("pkg/apis/meta/v1", "pkg/runtime", "pkg/runtime/schema", "pkg/api/resource", "pkg/util/intstr")

_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.M)
_MESSAGE = re.compile(r"^message\s+(\w+)\s*\{(.*?)^\}", re.M | re.S)
_FIELD = re.compile(r"^\s*(optional|repeated)?\s*(map\s*<\s*([\w.]+)\s*,\s*([\w.]+)\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;", re.M)
SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "double", "float", "fixed32", "fixed64"}


def _qualify(t: str, package: str) -> str:
    t = t.lstrip(".")
    if t in SCALARS or t.startswith("k8s.io."):
        return t
    return f"{package}.{t}"


def parse(text: str) -> dict[str, dict[str, list[Any]]]:
    """``{full message name: {field number: [name, type, label, map value type?]}}``."""
    package = _PACKAGE.search(text)
    if package is None:
        raise ValueError("no package statement")
    pkg = package.group(1)
    out: dict[str, dict[str, list[Any]]] = {}
    body_text = re.sub(r"//[^\n]*", "", text)
    for m in _MESSAGE.finditer(body_text):
        fields: dict[str, list[Any]] = {}
        for f in _FIELD.finditer(m.group(2)):
            label, typ, key, value, name, number = f.groups()
            if typ.startswith("map"):
                fields[number] = [name, _qualify(key, pkg), 3, _qualify(value, pkg)]
            else:
                fields[number] = [name, _qualify(typ, pkg), 2 if label == "repeated" else 1]
        out[f"{pkg}.{m.group(1)}"] = fields
    return out


def mark_inline(messages: dict[str, dict[str, list[Any]]], definitions: dict[str, Any]) -> None:
    """Embedded Go structs (``json:",inline"``, e.g. a Volume's VolumeSource) are fields in
    protobuf but inlined in JSON: a message field the type's JSON schema does not have,
    whose own fields it does, gets label ``4``."""
    for name, fields in messages.items():
        props = (definitions.get("io.k8s." + name.removeprefix("k8s.io.")) or {}).get("properties")
        if not props:
            continue
        for f in fields.values():
            sub = messages.get(f[1])
            if f[2] == 1 and f[0] not in props and sub and any(g[0] in props for g in sub.values()):
                f[2] = 4


def build(api_dir: Path, apimachinery_dir: Path) -> dict[str, Any]:
    from edgebus.openapi.spec import definitions

    messages: dict[str, Any] = {}
    for group, version in GROUP_VERSIONS:
        path = api_dir / (group.split(".")[0] if group else "core") / version / "generated.proto"
        if path.exists():
            messages.update(parse(path.read_text()))
    for sub in APIMACHINERY:
        messages.update(parse((apimachinery_dir / sub / "generated.proto").read_text()))
    mark_inline(messages, definitions())
    return {"messages": dict(sorted(messages.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("api", type=Path)
    ap.add_argument("apimachinery", type=Path)
    args = ap.parse_args()
    data = json.dumps(build(args.api, args.apimachinery), sort_keys=True, separators=(",", ":")).encode()
    OUT.write_bytes(gzip.compress(data, mtime=0))
    print(f"wrote {OUT} ({len(data)} bytes of JSON)")


if __name__ == "__main__":
    main()
