"""What each node needs, and what must be sent to get it there (pure; no I/O).

A node needs the pods bound to it (``spec.nodeName``) and the ConfigMaps and Secrets those
pods reference. The downstream copy of a pod has no ``status`` (the edge owns pod status),
so a status write in the cloud is never echoed back down. Whether a node already has the
right version of an object is decided by a hash of the downstream content, compared with
the hash stored (as a header) on the last message of that object's subject in
``EDGEBUS_DOWN``: the stream itself is the record of what was sent.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from edgebus.names import ObjectRef
from edgebus.objects import CONFIGMAPS, PODS, SECRETS, Resource
from edgebus.objects.refs import pod_node, pod_references

DOWN_RESOURCES: tuple[Resource, ...] = (PODS, CONFIGMAPS, SECRETS)

_VOLATILE_META = ("resourceVersion", "generation", "managedFields")
_CLOUD_ANNOTATIONS = ("edgebus.io/status-time",)


def downstream_content(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    if resource is PODS:
        out.pop("status", None)
    ann = (out.get("metadata") or {}).get("annotations")
    if isinstance(ann, dict):
        for a in _CLOUD_ANNOTATIONS:
            ann.pop(a, None)
        if not ann:
            out["metadata"].pop("annotations", None)
    return out


def content_hash(content: dict[str, Any]) -> str:
    c = dict(content)
    md = {k: v for k, v in (c.get("metadata") or {}).items() if k not in _VOLATILE_META}
    c["metadata"] = md
    return hashlib.sha1(json.dumps(c, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Sent:
    hash: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class Action:
    node: str
    ref: ObjectRef
    delete: bool
    content: dict[str, Any] | None
    hash: str


Key = tuple[str, str, str]  # (plural, namespace, name)


@dataclass
class Index:
    """An in-memory view of the objects that travel downstream, indexed for routing."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    pods_by_node: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    pod_node: dict[tuple[str, str], str] = field(default_factory=dict)
    pod_refs: dict[tuple[str, str], set[tuple[str, str]]] = field(default_factory=dict)
    referenced_by: dict[Key, set[tuple[str, str]]] = field(default_factory=dict)

    def nodes(self) -> set[str]:
        return {n for n, pods in self.pods_by_node.items() if pods}

    def apply(self, resource: Resource, obj: dict[str, Any], *, deleted: bool) -> set[str]:
        """Record a change; return the nodes whose desired state it may change."""
        md = obj.get("metadata") or {}
        ns, name = md.get("namespace") or "", md.get("name") or ""
        key: Key = (resource.plural, ns, name)
        if deleted:
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        if resource is PODS:
            return self._apply_pod((ns, name), None if deleted else obj)
        return {self.pod_node[p] for p in self.referenced_by.get(key, ()) if p in self.pod_node}

    def _apply_pod(self, pk: tuple[str, str], pod: dict[str, Any] | None) -> set[str]:
        affected: set[str] = set()
        old_node = self.pod_node.pop(pk, None)
        if old_node:
            affected.add(old_node)
            self.pods_by_node.get(old_node, set()).discard(pk)
        for ref in self.pod_refs.pop(pk, set()):
            self.referenced_by.get((ref[0], pk[0], ref[1]), set()).discard(pk)
        if pod is not None:
            node = pod_node(pod)
            if node:
                affected.add(node)
                self.pod_node[pk] = node
                self.pods_by_node.setdefault(node, set()).add(pk)
            refs = pod_references(pod)
            self.pod_refs[pk] = refs
            for r in refs:
                self.referenced_by.setdefault((r[0], pk[0], r[1]), set()).add(pk)
        return affected

    def desired(self, node: str) -> dict[ObjectRef, dict[str, Any]]:
        out: dict[ObjectRef, dict[str, Any]] = {}
        for ns, name in sorted(self.pods_by_node.get(node, ())):
            pod = self.objects.get((PODS.plural, ns, name))
            if pod is None:
                continue
            out[ObjectRef(PODS.plural, ns, name)] = downstream_content(PODS, pod)
            for plural, ref_name in sorted(self.pod_refs.get((ns, name), ())):
                obj = self.objects.get((plural, ns, ref_name))
                if obj is not None:
                    res = CONFIGMAPS if plural == CONFIGMAPS.plural else SECRETS
                    out[ObjectRef(plural, ns, ref_name)] = downstream_content(res, obj)
        return out


def diff(node: str, desired: dict[ObjectRef, dict[str, Any]], sent: dict[ObjectRef, Sent]) -> list[Action]:
    """The messages that make ``sent`` equal ``desired`` for one node."""
    actions: list[Action] = []
    for ref, content in desired.items():
        h = content_hash(content)
        s = sent.get(ref)
        if s is None or s.deleted or s.hash != h:
            actions.append(Action(node, ref, False, content, h))
    for ref, s in sent.items():
        if not s.deleted and ref not in desired:
            actions.append(Action(node, ref, True, None, ""))
    return actions
