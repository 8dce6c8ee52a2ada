"""Device routing (pure): a node needs the Devices bound to it (``spec.nodeName``) and the
DeviceModels those devices reference (same namespace). Desired twin values travel inside
the Device spec; its ``status`` (owned by the edge) never travels down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebus.names import ObjectRef
from edgebus.objects import DEVICEMODELS, DEVICES, Resource
from edgebus.objects.devices import device_model_name, device_node

PLURALS = (DEVICES.plural, DEVICEMODELS.plural)

DK = tuple[str, str]  # (namespace, name)


@dataclass
class DeviceRouting:
    device_node: dict[DK, str] = field(default_factory=dict)
    devices_by_node: dict[str, set[DK]] = field(default_factory=dict)
    device_model: dict[DK, str] = field(default_factory=dict)
    model_users: dict[DK, set[DK]] = field(default_factory=dict)

    def nodes(self) -> set[str]:
        return {n for n, devs in self.devices_by_node.items() if devs}

    def apply(self, resource: Resource, ns: str, name: str, obj: dict[str, Any] | None) -> dict[str, set[ObjectRef] | None]:
        """Record a change of a Device or DeviceModel; return the nodes and refs to re-check."""
        affected: dict[str, set[ObjectRef] | None] = {}

        def touch(node: str, *refs: ObjectRef) -> None:
            s = affected.setdefault(node, set())
            if s is not None:
                s.update(refs)

        if resource is DEVICEMODELS:
            ref = ObjectRef(DEVICEMODELS.plural, ns or None, name)
            for dk in self.model_users.get((ns, name), ()):
                node = self.device_node.get(dk)
                if node:
                    touch(node, ref)
            return affected
        dk = (ns, name)
        dref = ObjectRef(DEVICES.plural, ns or None, name)
        old_node = self.device_node.pop(dk, None)
        old_model = self.device_model.pop(dk, None)
        if old_node:
            self.devices_by_node.get(old_node, set()).discard(dk)
        if old_model:
            self.model_users.get((ns, old_model), set()).discard(dk)
        if old_node:
            touch(old_node, dref, *([ObjectRef(DEVICEMODELS.plural, ns or None, old_model)] if old_model else []))
        if obj is not None:
            node, model = device_node(obj), device_model_name(obj)
            if node:
                self.device_node[dk] = node
                self.devices_by_node.setdefault(node, set()).add(dk)
            if model:
                self.device_model[dk] = model
                self.model_users.setdefault((ns, model), set()).add(dk)
            if node:
                touch(node, dref, *([ObjectRef(DEVICEMODELS.plural, ns or None, model)] if model else []))
        return affected

    def wanted(self, node: str, plural: str, ns: str, name: str) -> bool:
        if plural == DEVICES.plural:
            return self.device_node.get((ns, name)) == node
        return any(self.device_node.get(dk) == node for dk in self.model_users.get((ns, name), ()))

    def refs(self, node: str, exists: Any) -> set[ObjectRef]:
        """What ``node`` needs; ``exists(plural, ns, name)`` tells whether an object exists."""
        out: set[ObjectRef] = set()
        for ns, name in self.devices_by_node.get(node, ()):
            if not exists(DEVICES.plural, ns, name):
                continue
            out.add(ObjectRef(DEVICES.plural, ns or None, name))
            model = self.device_model.get((ns, name))
            if model and exists(DEVICEMODELS.plural, ns, model):
                out.add(ObjectRef(DEVICEMODELS.plural, ns or None, model))
        return out
