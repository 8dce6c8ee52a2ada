"""Service routing (pure): every node gets every Service and every Endpoints object.

Any process on a node may call any Service (a pod of any namespace, or a host process),
and edgemesh must answer for it while the node is offline, so no node can be left out.
Which nodes exist comes from the Node objects: a new node gets all of them at once, a
deleted node gets deletes. The cost is one downstream message per node for each change of
a Service or Endpoints (see ``docs/edgemesh.md``, "Scale").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebus.names import ObjectRef
from edgebus.objects import ENDPOINTS, NODES, SERVICES, Resource

#: routed to every node
PLURALS = (SERVICES.plural, ENDPOINTS.plural)


@dataclass
class MeshRouting:
    nodes: set[str] = field(default_factory=set)
    objects: set[tuple[str, str, str]] = field(default_factory=set)  # (plural, ns, name)

    def apply(self, resource: Resource, ns: str, name: str, obj: dict[str, Any] | None) -> dict[str, set[ObjectRef] | None]:
        """Record a change of a Node, Service or Endpoints; return the nodes and refs to re-check."""
        if resource is NODES:
            if obj is None:
                if name not in self.nodes:
                    return {}
                self.nodes.discard(name)
            else:
                if name in self.nodes:
                    return {}  # a status update: nothing to route
                self.nodes.add(name)
            return {name: None}  # a full diff of the node: everything it has or needs
        key = (resource.plural, ns, name)
        if obj is None:
            self.objects.discard(key)
        else:
            self.objects.add(key)
        ref = self._ref(key)
        return {n: {ref} for n in self.nodes}

    @staticmethod
    def _ref(key: tuple[str, str, str]) -> ObjectRef:
        return ObjectRef(key[0], key[1] or None, key[2])

    def wanted(self, node: str, plural: str, ns: str, name: str) -> bool:
        return node in self.nodes and (plural, ns, name) in self.objects

    def refs(self, node: str) -> set[ObjectRef]:
        if node not in self.nodes:
            return set()
        return {self._ref(k) for k in self.objects}
