"""What a Node heartbeat write costs the cloud's controllers: a status-only change of a
Node wakes no NodeGroup (nor DaemonSet) reconcile, whatever the number of groups."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

from edgebus.objects import NODEGROUPS, NODES
from services.nodegroupcontroller.service import NodeGroupController


class Cache:
    def __init__(self, groups: int) -> None:
        self.groups = [("", f"g{i}") for i in range(groups)]
        self.calls = 0

        self.deleted: set[str] = set()

    def get(self, plural: str, key: tuple[str, str]) -> dict[str, Any] | None:
        return None if key[1] in self.deleted else {"metadata": {"name": key[1]}}

    def keys(self, plural: str) -> list[tuple[str, str]]:
        assert plural == NODEGROUPS.plural
        self.calls += 1
        return list(self.groups)


def node(labels: dict[str, str], hb: str) -> dict[str, Any]:
    return {"metadata": {"name": "n1", "labels": labels}, "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": hb}]}}


def test_a_heartbeat_write_wakes_no_nodegroup() -> None:
    cache = Cache(50)
    ctl = SimpleNamespace(cache=cache)
    old = node({"a": "1"}, "2026-01-01T00:00:00Z")
    new = node({"a": "1"}, "2026-01-01T00:00:10Z")
    assert NodeGroupController.keys_for(ctl, NODES, new, old) == set()  # type: ignore[arg-type]
    assert cache.calls == 0
    relabelled = copy.deepcopy(new)
    relabelled["metadata"]["labels"]["zone"] = "z1"
    assert len(NodeGroupController.keys_for(ctl, NODES, relabelled, new)) == 50  # type: ignore[arg-type]
    assert len(NodeGroupController.keys_for(ctl, NODES, new, None)) == 50  # type: ignore[arg-type]
    unready = copy.deepcopy(new)
    unready["status"]["conditions"][0]["status"] = "Unknown"
    assert len(NodeGroupController.keys_for(ctl, NODES, unready, new)) == 50, "a group's status shows its nodes' readiness"  # type: ignore[arg-type]
    cache.deleted.add("n1")
    assert len(NodeGroupController.keys_for(ctl, NODES, new, new)) == 50, "a deleted node leaves its group"  # type: ignore[arg-type]
