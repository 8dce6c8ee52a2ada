"""What a pod needs on its node besides itself: the ConfigMaps and Secrets it references."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from edgebus.objects.resources import CONFIGMAPS, SECRETS


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                yield c


def pod_references(pod: dict[str, Any]) -> set[tuple[str, str]]:
    """``{(resource plural, name)}`` of ConfigMaps and Secrets the pod uses (same namespace)."""
    spec = pod.get("spec") or {}
    if not isinstance(spec, dict):
        return set()
    out: set[tuple[str, str]] = set()

    def add(resource: str, name: Any) -> None:
        if isinstance(name, str) and name:
            out.add((resource, name))

    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        add(CONFIGMAPS.plural, (v.get("configMap") or {}).get("name"))
        add(SECRETS.plural, (v.get("secret") or {}).get("secretName"))
        for src in (v.get("projected") or {}).get("sources") or []:
            if isinstance(src, dict):
                add(CONFIGMAPS.plural, (src.get("configMap") or {}).get("name"))
                add(SECRETS.plural, (src.get("secret") or {}).get("name"))
    for c in _containers(spec):
        for e in c.get("env") or []:
            vf = (e or {}).get("valueFrom") or {} if isinstance(e, dict) else {}
            add(CONFIGMAPS.plural, (vf.get("configMapKeyRef") or {}).get("name"))
            add(SECRETS.plural, (vf.get("secretKeyRef") or {}).get("name"))
        for ef in c.get("envFrom") or []:
            if isinstance(ef, dict):
                add(CONFIGMAPS.plural, (ef.get("configMapRef") or {}).get("name"))
                add(SECRETS.plural, (ef.get("secretRef") or {}).get("name"))
    for s in spec.get("imagePullSecrets") or []:
        if isinstance(s, dict):
            add(SECRETS.plural, s.get("name"))
    return out


def pod_node(pod: dict[str, Any]) -> str | None:
    spec = pod.get("spec") or {}
    n = spec.get("nodeName") if isinstance(spec, dict) else None
    return n if isinstance(n, str) and n else None
