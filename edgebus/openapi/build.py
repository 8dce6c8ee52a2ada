"""Regenerate the vendored Kubernetes schema definitions (``k8s-v1.30.json.gz``).

Source: the ``kubernetes-validate`` package (a test dependency, pinned), which ships the
schema definitions of each Kubernetes release converted to JSON Schema. This turns them
back into the OpenAPI v2 (swagger) form the API server publishes, keeps the kinds of the
group-versions in ``GROUP_VERSIONS`` and everything they reference (plus the ``meta/v1``
types the API paths name), and writes them compressed, sorted, reproducibly::

    python -m edgebus.openapi.build            # rewrite the file
    python -m edgebus.openapi.build --check    # exit 1 if the file is out of date

Only this module needs ``kubernetes-validate``; the servers read the vendored file (70 KB
instead of the package's 100 MB of schemas for every release).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

#: The Kubernetes release whose schemas are vendored (the version ``/version`` reports).
K8S_VERSION = "v1.30.0"
OUT = Path(__file__).with_name("k8s-v1.30.json.gz")
#: Types the API paths refer to besides the kinds themselves.
EXTRA = (
    "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
)
_REF_PREFIX = "#/$defs/"
#: The group-versions whose kinds are vendored (served now, or by the resources built on them).
GROUP_VERSIONS = (
    ("", "v1"),
    ("apps", "v1"),
    ("batch", "v1"),
    ("policy", "v1"),
    ("autoscaling", "v1"),
    ("rbac.authorization.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
    ("authentication.k8s.io", "v1"),
    ("events.k8s.io", "v1"),
    ("node.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
)


def source_file(version: str = K8S_VERSION) -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("kubernetes-validate is not installed: pip install -e '.[test]' (it is a test dependency)")
    return Path(list(spec.submodule_search_locations)[0]) / "kubernetes-json-schema" / f"{version}-local" / "_definitions.json"


def _refs(x: Any) -> list[str]:
    if isinstance(x, dict):
        out = [str(x["$ref"])[len(_REF_PREFIX) :]] if isinstance(x.get("$ref"), str) else []
        for k, v in x.items():
            if k != "$ref":
                out += _refs(v)
        return out
    if isinstance(x, list):
        return [r for v in x for r in _refs(v)]
    return []


def _swagger(x: Any) -> Any:
    """JSON Schema (2020-12, nullable types) back to the swagger form."""
    if isinstance(x, list):
        return [_swagger(v) for v in x]
    if not isinstance(x, dict):
        return x
    out: dict[str, Any] = {}
    for k, v in x.items():
        if k == "$ref":
            out[k] = "#/definitions/" + str(v)[len(_REF_PREFIX) :]
        elif k == "type" and isinstance(v, list):
            types = [t for t in v if t != "null"]
            out[k] = types[0]
        elif k == "properties":
            out[k] = {pk: _swagger(pv) for pk, pv in v.items()}
        else:
            out[k] = _swagger(v)
    return out


def convert(defs: dict[str, Any]) -> dict[str, Any]:
    """The kinds of ``GROUP_VERSIONS`` and their closure, as swagger definitions."""
    roots = [
        name
        for name, d in defs.items()
        if name.startswith("io.k8s.api.")
        and any((g.get("group"), g.get("version")) in GROUP_VERSIONS for g in d.get("x-kubernetes-group-version-kind") or [])
    ]
    seen: set[str] = set()
    stack = [*roots, *EXTRA]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(_refs(defs[n]))
    out: dict[str, Any] = {}
    for name in sorted(seen):
        d = _swagger(defs[name])
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            d = {"description": "IntOrString is a type that can hold an int32 or a string.", "type": "string", "format": "int-or-string"}
        elif name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            d = {"description": "Quantity is a fixed-point representation of a number, e.g. 100m or 1Gi.", "type": "string"}
        if d.get("x-kubernetes-group-version-kind"):
            # the JSON Schema conversion pinned apiVersion and kind with an enum; the API does not
            for k in ("apiVersion", "kind"):
                (d.get("properties") or {}).get(k, {}).pop("enum", None)
        out[name] = d
    return out


def render(version: str = K8S_VERSION) -> bytes:
    defs = json.loads(source_file(version).read_text())["$defs"]
    body = json.dumps({"kubernetes": version, "definitions": convert(defs)}, sort_keys=True, separators=(",", ":")).encode()
    return gzip.compress(body, compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--check", action="store_true", help="only check that the vendored file is up to date")
    args = ap.parse_args(argv)
    data = render()
    if args.check:
        same = OUT.exists() and gzip.decompress(OUT.read_bytes()) == gzip.decompress(data)
        print(f"{OUT.name}: {'up to date' if same else 'OUT OF DATE: run python -m edgebus.openapi.build'}")
        return 0 if same else 1
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
