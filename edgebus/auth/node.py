"""The Node authorizer (Kubernetes' Node authorizer and NodeRestriction, simplified) for the
user ``system:node:<name>`` in ``system:nodes``.

A node may

* read (get, list, watch) nodes, pods, services, endpoints and namespaces;
* get a ConfigMap or Secret only while a pod bound to it references it, a Device bound to it,
  and a DeviceModel such a Device uses;
* update / patch its own Node and ``nodes/status``, ``pods/status`` of the pods bound to it,
  ``devices/status`` of its Devices;
* create / update / patch events.

Anything else gets no opinion from here, so RBAC decides (and grants nodes nothing by
default): ``secrets "s" is forbidden: User "system:node:edge-1" cannot get resource
"secrets" in API group "" in the namespace "default": no relationship found between node
'edge-1' and this object``.

:class:`NodeGraph` is the relationship index (pods and Devices to nodes, ConfigMaps and
Secrets to the pods that use them, DeviceModels to Devices), kept from a watch of pods and
Devices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebus.auth.attributes import Attributes
from edgebus.auth.rbac import NO_OPINION, Decision
from edgebus.auth.user import UserInfo, node_of
from edgebus.objects.refs import pod_node, pod_references

DEVICES_GROUP = "devices.kubeedge.io"
READABLE = frozenset({("", "nodes"), ("", "pods"), ("", "services"), ("", "endpoints"), ("", "namespaces")})
_ALLOWED = Decision(True, "allowed by the Node authorizer")

Key = tuple[str, str]  # (namespace, name)


@dataclass
class NodeGraph:
    pod_node: dict[Key, str] = field(default_factory=dict)
    pod_refs: dict[Key, set[tuple[str, str]]] = field(default_factory=dict)
    #: (plural, namespace, name) of a ConfigMap/Secret -> pods referencing it
    referenced_by: dict[tuple[str, str, str], set[Key]] = field(default_factory=dict)
    device_node: dict[Key, str] = field(default_factory=dict)
    device_model: dict[Key, str] = field(default_factory=dict)
    #: (namespace, model) -> devices using it
    model_users: dict[Key, set[Key]] = field(default_factory=dict)

    def apply(self, plural: str, obj: dict[str, Any], *, deleted: bool = False) -> None:
        md = obj.get("metadata") or {}
        key: Key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
        if plural == "pods":
            self.pod_node.pop(key, None)
            for r in self.pod_refs.pop(key, set()):
                users = self.referenced_by.get((r[0], key[0], r[1]))
                if users is not None:
                    users.discard(key)
                    if not users:
                        del self.referenced_by[(r[0], key[0], r[1])]
            if deleted:
                return
            node = pod_node(obj)
            if node:
                self.pod_node[key] = node
            refs = pod_references(obj)
            self.pod_refs[key] = refs
            for r in refs:
                self.referenced_by.setdefault((r[0], key[0], r[1]), set()).add(key)
        elif plural == "devices":
            self.device_node.pop(key, None)
            old = self.device_model.pop(key, None)
            if old is not None:
                self.model_users.get((key[0], old), set()).discard(key)
            if deleted:
                return
            spec = obj.get("spec") or {}
            if isinstance(spec.get("nodeName"), str) and spec["nodeName"]:
                self.device_node[key] = spec["nodeName"]
            model = (spec.get("deviceModelRef") or {}).get("name") if isinstance(spec.get("deviceModelRef"), dict) else None
            if isinstance(model, str) and model:
                self.device_model[key] = model
                self.model_users.setdefault((key[0], model), set()).add(key)

    def references(self, node: str, plural: str, namespace: str, name: str) -> bool:
        return any(self.pod_node.get(p) == node for p in self.referenced_by.get((plural, namespace, name), ()))

    def model_on(self, node: str, namespace: str, model: str) -> bool:
        return any(self.device_node.get(d) == node for d in self.model_users.get((namespace, model), ()))


def _no_relationship(node: str) -> Decision:
    return Decision(False, f"no relationship found between node '{node}' and this object", decided=False)


def authorize_node(user: UserInfo, a: Attributes, graph: NodeGraph) -> Decision:
    """Allow what a node needs; no opinion on anything else (and on non-node users)."""
    node = node_of(user)
    if node is None or not a.resource_request:
        return NO_OPINION
    gr = (a.api_group, a.resource)
    key: Key = (a.namespace, a.name)
    if a.read_only and a.subresource in ("", "status") and gr in READABLE:
        return _ALLOWED
    if gr in (("", "configmaps"), ("", "secrets")) and a.verb == "get" and not a.subresource:
        return _ALLOWED if graph.references(node, a.resource, a.namespace, a.name) else _no_relationship(node)
    if gr == (DEVICES_GROUP, "devices") and a.verb == "get" and a.subresource in ("", "status"):
        return _ALLOWED if graph.device_node.get(key) == node else _no_relationship(node)
    if gr == (DEVICES_GROUP, "devicemodels") and a.verb == "get" and not a.subresource:
        return _ALLOWED if graph.model_on(node, a.namespace, a.name) else _no_relationship(node)
    if a.verb in ("update", "patch"):
        if gr == ("", "nodes") and a.subresource in ("", "status"):
            return _ALLOWED if a.name == node else Decision(False, f"node '{node}' cannot modify node '{a.name}'", decided=False)
        if gr == ("", "pods") and a.subresource == "status":
            return _ALLOWED if graph.pod_node.get(key) == node else Decision(False, f"node '{node}' can only update the status of pods bound to it", decided=False)
        if gr == (DEVICES_GROUP, "devices") and a.subresource == "status":
            return _ALLOWED if graph.device_node.get(key) == node else Decision(False, f"node '{node}' can only update the status of devices bound to it", decided=False)
    if gr == ("", "events") and a.verb in ("create", "update", "patch"):
        return _ALLOWED
    return NO_OPINION
