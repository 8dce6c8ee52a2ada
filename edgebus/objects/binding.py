"""Binding a pod to a node (the ``pods/binding`` subresource), as the Kubernetes API
server does it (pure): the pod must not be bound already nor be terminating, a uid in the
Binding must be the pod's, the Binding's annotations are copied onto the pod, and the pod
gets ``spec.nodeName`` and the ``PodScheduled=True`` condition."""

from __future__ import annotations

import datetime as dt
from typing import Any

from edgebus.errors import BadRequest, Conflict
from edgebus.objects.resources import meta


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refused(name: str, why: str) -> Conflict:
    return Conflict(f'Operation cannot be fulfilled on pods/binding "{name}": {why}', details={"name": name, "group": "", "kind": "pods/binding"})


def target_of(binding: Any) -> str:
    """The node a Binding names (``target.name``, kind Node)."""
    if not isinstance(binding, dict):
        raise BadRequest("the request body must be a Binding object")
    target = binding.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("name"), str) or not target["name"]:
        raise BadRequest("Binding.target.name is required")
    if target.get("kind") not in (None, "", "Node"):
        raise BadRequest(f'Binding.target.kind must be "Node", not {target.get("kind")!r}')
    return str(target["name"])


def bind(pod: dict[str, Any], node: str, *, uid: str | None = None, annotations: dict[str, str] | None = None, now: dt.datetime | None = None) -> dict[str, Any]:
    """``pod`` bound to ``node`` (a changed copy is not made: ``pod`` is changed)."""
    md = meta(pod)
    name = str(md.get("name") or "")
    if uid and md.get("uid") != uid:
        raise _refused(name, f"Precondition failed: UID in precondition: {uid}, UID in object meta: {md.get('uid')}")
    if md.get("deletionTimestamp"):
        raise _refused(name, f"pod {name} is being deleted, cannot be assigned to a host")
    spec = pod.setdefault("spec", {})
    if spec.get("nodeName"):
        raise _refused(name, f'pod {name} is already assigned to node "{spec["nodeName"]}"')
    spec["nodeName"] = node
    if annotations:
        pod.setdefault("metadata", {}).setdefault("annotations", {}).update({str(k): str(v) for k, v in annotations.items()})
    st = pod.setdefault("status", {})
    conds = [c for c in st.get("conditions") or [] if isinstance(c, dict) and c.get("type") != "PodScheduled"]
    conds.insert(0, {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": _rfc3339(now or dt.datetime.now(dt.UTC))})
    st["conditions"] = conds
    st.pop("nominatedNodeName", None)
    return pod
