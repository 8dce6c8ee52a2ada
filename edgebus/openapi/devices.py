"""Schemas of the devices API group (``devices.kubeedge.io``), as the API server publishes a
CRD's: built from the structural schemas of :mod:`edgebus.objects.device_schema` (KubeEdge's
CRDs, field for field, plus edgebus's ``spec.rules`` and Device status), with ``metadata``
pointing at ``ObjectMeta`` and a ``List`` kind per kind.

Protocol and visitor ``configData`` are free-form (``x-kubernetes-preserve-unknown-fields``),
as in KubeEdge: each mapper defines its own, and unknown keys survive.
"""

from __future__ import annotations

import copy
from typing import Any

from edgebus.objects.device_schema import SCHEMAS

GROUP = "devices.kubeedge.io"
VERSION = "v1beta1"
PREFIX = "io.kubeedge.devices.v1beta1."
META = "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"


def prefix(version: str) -> str:
    return f"io.kubeedge.devices.{version}."


def _with_meta(schema: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(schema)
    out["properties"]["metadata"] = {"$ref": META, "description": "Standard object's metadata."}
    return out


def definitions() -> dict[str, Any]:
    """The group's definitions, keyed by definition name."""
    out: dict[str, Any] = {}
    for (version, kind), schema in SCHEMAS.items():
        p = prefix(version)
        gvk = lambda k, v=version: [{"group": GROUP, "version": v, "kind": k}]  # noqa: E731
        out[p + kind] = {**_with_meta(schema), "x-kubernetes-group-version-kind": gvk(kind)}
        out[p + kind + "List"] = {
            "description": f"{kind}List contains a list of {kind}",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"$ref": LIST_META},
                "items": {"type": "array", "items": {"$ref": f"#/definitions/{p}{kind}"}},
            },
            "required": ["items"],
            "x-kubernetes-group-version-kind": gvk(kind + "List"),
        }
    return out
