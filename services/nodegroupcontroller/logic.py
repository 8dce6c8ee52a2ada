"""A NodeGroup's members, node labels and status (pure; no I/O), as KubeEdge's node group
controller: members are the named nodes and those ``matchLabels`` selects; each member gets
``apps.kubeedge.io/belonging-to: <group>`` unless it belongs to another group already (then
its selection fails); nodes that left lose the label; a named node that does not exist is
reported ``node does not exist``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebus.objects.nodegroups import BELONGING_TO


def _md(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("metadata") or {}


def ready_status(node: dict[str, Any]) -> str:
    for c in (node.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return {"True": "Ready", "False": "NotReady"}.get(str(c.get("status")), "Unknown")
    return "Unknown"


def members(group: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> list[str]:
    spec = group.get("spec") or {}
    out = {n for n in spec.get("nodes") or [] if n in nodes}
    sel = spec.get("matchLabels") or {}
    if sel:
        out |= {name for name, n in nodes.items() if all((_md(n).get("labels") or {}).get(k) == v for k, v in sel.items())}
    return sorted(out)


@dataclass
class Plan:
    label: list[str] = field(default_factory=list)  # nodes to give the group's label
    unlabel: list[str] = field(default_factory=list)  # nodes to take it off
    status: dict[str, Any] = field(default_factory=dict)


def plan(name: str, group: dict[str, Any] | None, nodes: dict[str, dict[str, Any]]) -> Plan:
    labelled = sorted(n for n, o in nodes.items() if (_md(o).get("labels") or {}).get(BELONGING_TO) == name)
    if group is None or _md(group).get("deletionTimestamp"):
        return Plan(unlabel=labelled)
    want = members(group, nodes)
    out = Plan(unlabel=[n for n in labelled if n not in want])
    statuses = []
    for n in want:
        current = (_md(nodes[n]).get("labels") or {}).get(BELONGING_TO)
        st = {"nodeName": n, "readyStatus": ready_status(nodes[n])}
        if current not in (None, name):
            st.update(selectionStatus="Failed", selectionStatusReason=f"node {n} already belongs to node group {current}")
        else:
            st["selectionStatus"] = "Succeeded"
            if current is None:
                out.label.append(n)
        statuses.append(st)
    for n in sorted(set((group.get("spec") or {}).get("nodes") or []) - set(nodes)):
        statuses.append({"nodeName": n, "readyStatus": "Unknown", "selectionStatus": "Failed", "selectionStatusReason": "node does not exist"})
    statuses.sort(key=lambda s: s["nodeName"])
    out.status = {"nodeStatuses": statuses} if statuses else {}
    return out
