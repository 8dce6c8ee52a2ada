"""What each node needs, and what must be sent to get it there (pure; no I/O).

A node needs the pods bound to it (``spec.nodeName``) and the ConfigMaps and Secrets those
pods reference, the Devices bound to it and their DeviceModels (``devices.py``), and every
Service and Endpoints object (``mesh.py``; which nodes exist comes from the Node objects)
and every Role, ClusterRole, RoleBinding and ClusterRoleBinding (the node's metaserver
authorizes its local clients with them, also offline; routed like Services), and its own
Node object (its metaserver serves it; without the heartbeat times and report stamps, so a
heartbeat sends nothing). The downstream copy of a pod or a device has no ``status`` (the edge owns it), so a status
write in the cloud is never echoed back down. Whether a node already has the
right version of an object is decided by a hash of the downstream content, compared with
the hash stored (as a header) on the last message of that object's subject in
``EDGEBUS_DOWN``: the stream itself is the record of what was sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from edgebus.names import ObjectRef
from edgebus.objects import CONFIGMAPS, DEVICEMODELS, DEVICES, ENDPOINTS, NODES, PODS, RBAC_RESOURCES, SECRETS, SERVICES, Resource
from edgebus.objects.refs import pod_node, pod_references
from services.edgecontroller.devices import PLURALS as DEVICE_PLURALS
from services.edgecontroller.devices import DeviceRouting
from services.edgecontroller.mesh import PLURALS as MESH_PLURALS
from services.edgecontroller.mesh import MeshRouting

DOWN_RESOURCES: tuple[Resource, ...] = (PODS, CONFIGMAPS, SECRETS, DEVICES, DEVICEMODELS, SERVICES, ENDPOINTS, *RBAC_RESOURCES)
#: routed to every node (the same way: which nodes exist comes from the Node objects)
EVERY_NODE = frozenset((*MESH_PLURALS, *(r.plural for r in RBAC_RESOURCES)))
#: what the controller follows: what travels down, and the nodes (Services go to every node)
WATCHED_RESOURCES: tuple[Resource, ...] = (*DOWN_RESOURCES, NODES)

_VOLATILE_META = ("resourceVersion", "generation", "managedFields")
#: cloudhub's bookkeeping on the objects (report times and order; a pod's readiness kept
#: aside while its node is unreachable): never sent down, never a change, so it costs the
#: node no traffic
_CLOUD_ANNOTATIONS = ("edgebus.io/status-time", "edgebus.io/status-order", "edgebus.io/twin-order", "edgebus.io/ready-before-unreachable")


def downstream_content(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the node gets it (shallow copies: ``obj`` is never modified)."""
    out = dict(obj)
    if resource is PODS or resource is DEVICES:
        out.pop("status", None)
    if resource is NODES:
        out = _node_content(out)
    md = out.get("metadata")
    ann = md.get("annotations") if isinstance(md, dict) else None
    if isinstance(ann, dict) and any(a in ann for a in _CLOUD_ANNOTATIONS):
        md = dict(md)  # type: ignore[arg-type]
        kept = {k: v for k, v in ann.items() if k not in _CLOUD_ANNOTATIONS}
        if kept:
            md["annotations"] = kept
        else:
            md.pop("annotations", None)
        out["metadata"] = md
    return out


#: what changes in a Node's status at every heartbeat: not sent down (the node would get a
#: message per heartbeat), so its copy changes only when something in it really does
_HEARTBEAT_FIELDS = ("lastHeartbeatTime",)


def _node_content(node: dict[str, Any]) -> dict[str, Any]:
    """A Node as its own node gets it (its metaserver serves it): without the heartbeat times
    and the per-reporter report times and orders (``edgebus.io/status-time.<source>``)."""
    out = dict(node)
    md = out.get("metadata")
    ann = md.get("annotations") if isinstance(md, dict) else None
    if isinstance(ann, dict):
        kept = {k: v for k, v in ann.items() if not k.startswith(_CLOUD_ANNOTATIONS)}
        md = {**md}  # type: ignore[dict-item]
        if kept:
            md["annotations"] = kept
        else:
            md.pop("annotations", None)
        out["metadata"] = md
    st = out.get("status")
    if isinstance(st, dict) and isinstance(st.get("conditions"), list):
        out["status"] = {**st, "conditions": [{k: v for k, v in c.items() if k not in _HEARTBEAT_FIELDS} if isinstance(c, dict) else c for c in st["conditions"]]}
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

#: For a change: the nodes it may affect, each with the refs to re-check (None: all).
Affected = dict[str, set[ObjectRef] | None]


def _ref(key: Key) -> ObjectRef:
    return ObjectRef(key[0], key[1] or None, key[2])


def _res(plural: str) -> Resource:
    return {r.plural: r for r in (*DOWN_RESOURCES, NODES)}[plural]


@dataclass
class Index:
    """An in-memory view of the objects that travel downstream, indexed for routing.

    The downstream content and its hash are computed once per object version and cached,
    so a change costs work proportional to what it affects, not to the node's size.
    """

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    prepared: dict[Key, tuple[dict[str, Any], str]] = field(default_factory=dict)
    pods_by_node: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    pod_node: dict[tuple[str, str], str] = field(default_factory=dict)
    pod_refs: dict[tuple[str, str], set[tuple[str, str]]] = field(default_factory=dict)
    referenced_by: dict[Key, set[tuple[str, str]]] = field(default_factory=dict)
    devices: DeviceRouting = field(default_factory=DeviceRouting)
    mesh: MeshRouting = field(default_factory=MeshRouting)

    def nodes(self) -> set[str]:
        return {n for n, pods in self.pods_by_node.items() if pods} | self.devices.nodes() | self.mesh.nodes

    def apply(self, resource: Resource, obj: dict[str, Any], *, deleted: bool) -> Affected:
        """Record a change; return the nodes (and refs) whose desired state it may change."""
        md = obj.get("metadata") or {}
        ns, name = md.get("namespace") or "", md.get("name") or ""
        key: Key = (resource.plural, ns, name)
        self.prepared.pop(key, None)
        if resource is NODES:  # tells which nodes exist; each node also gets its own Node
            if deleted:
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj
            affected = self.mesh.apply(resource, ns, name, None if deleted else obj)
            if name not in affected:
                affected = {**affected, name: {_ref(key)}}
            return affected
        if deleted:
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        if resource is PODS:
            return self._apply_pod((ns, name), None if deleted else obj)
        if resource.plural in DEVICE_PLURALS:
            return self.devices.apply(resource, ns, name, None if deleted else obj)
        if resource.plural in EVERY_NODE:
            return self.mesh.apply(resource, ns, name, None if deleted else obj)
        out: Affected = {}
        for p in self.referenced_by.get(key, ()):
            node = self.pod_node.get(p)
            if node:
                refs = out.setdefault(node, set())
                if refs is not None:
                    refs.add(_ref(key))
        return out

    def _apply_pod(self, pk: tuple[str, str], pod: dict[str, Any] | None) -> Affected:
        affected: Affected = {}
        old_node = self.pod_node.pop(pk, None)
        if old_node:
            affected[old_node] = None
            self.pods_by_node.get(old_node, set()).discard(pk)
        for ref in self.pod_refs.pop(pk, set()):
            self.referenced_by.get((ref[0], pk[0], ref[1]), set()).discard(pk)
        if pod is not None:
            node = pod_node(pod)
            if node:
                affected[node] = None
                self.pod_node[pk] = node
                self.pods_by_node.setdefault(node, set()).add(pk)
            refs = pod_references(pod)
            self.pod_refs[pk] = refs
            for r in refs:
                self.referenced_by.setdefault((r[0], pk[0], r[1]), set()).add(pk)
        return affected

    def prepare(self, ref: ObjectRef) -> tuple[dict[str, Any], str]:
        key: Key = (ref.resource, ref.namespace or "", ref.name)
        hit = self.prepared.get(key)
        if hit is None:
            content = downstream_content(_res(ref.resource), self.objects[key])
            hit = (content, content_hash(content))
            self.prepared[key] = hit
        return hit

    def wanted(self, node: str, ref: ObjectRef) -> bool:
        """Does ``node`` need ``ref`` (and does the object exist)?"""
        key: Key = (ref.resource, ref.namespace or "", ref.name)
        if key not in self.objects:
            return False
        if ref.resource == PODS.plural:
            return self.pod_node.get((key[1], key[2])) == node
        if ref.resource == NODES.plural:
            return key[2] == node
        if ref.resource in DEVICE_PLURALS:
            return self.devices.wanted(node, *key)
        if ref.resource in EVERY_NODE:
            return self.mesh.wanted(node, *key)
        return any(self.pod_node.get(p) == node for p in self.referenced_by.get(key, ()))

    def desired_refs(self, node: str) -> set[ObjectRef]:
        out: set[ObjectRef] = set()
        for ns, name in self.pods_by_node.get(node, ()):
            if (PODS.plural, ns, name) not in self.objects:
                continue
            out.add(ObjectRef(PODS.plural, ns, name))
            for plural, ref_name in self.pod_refs.get((ns, name), ()):
                if (plural, ns, ref_name) in self.objects:
                    out.add(ObjectRef(plural, ns, ref_name))
        out |= self.devices.refs(node, lambda *k: k in self.objects)
        out |= self.mesh.refs(node)
        if (NODES.plural, "", node) in self.objects:
            out.add(ObjectRef(NODES.plural, None, node))
        return out

    def desired(self, node: str) -> dict[ObjectRef, dict[str, Any]]:
        return {ref: self.prepare(ref)[0] for ref in self.desired_refs(node)}


def diff(index: Index, node: str, sent: dict[ObjectRef, Sent], refs: set[ObjectRef] | None = None) -> list[Action]:
    """The messages that make what ``node`` was sent equal what it needs.

    ``refs``: only re-check these (a ConfigMap or Secret changed); None: the whole node.
    """
    if refs is None:
        desired = index.desired_refs(node)
        candidates = desired | {r for r, s in sent.items() if not s.deleted}
        wanted = desired.__contains__
    else:
        candidates = refs
        wanted = functools.partial(index.wanted, node)
    actions: list[Action] = []
    for ref in sorted(candidates, key=lambda r: (r.resource != PODS.plural, r.resource, r.namespace or "", r.name)):
        s = sent.get(ref)
        if wanted(ref):
            content, h = index.prepare(ref)
            if s is None or s.deleted or s.hash != h:
                actions.append(Action(node, ref, False, content, h))
        elif s is not None and not s.deleted:
            actions.append(Action(node, ref, True, None, ""))
    return actions
