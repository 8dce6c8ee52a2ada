"""Node status from two reporters (edgehub, edged) and graceful pod deletion: pure rules."""

from __future__ import annotations

import copy

from edgebus.objectstore import graceful_pod_delete
from services.cloudhub import logic


def node() -> dict:
    return logic.new_node("edge-1", {}, None)


def apply(obj: dict, source: str, t: int, status: dict) -> bool:
    who = logic.reporter(source)
    if not logic.report_is_newer(obj, t, who):
        return False
    logic.stamp(obj, t, who)
    logic.merge_node_status(obj, status)
    return True


EDGEHUB = {
    "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
    "nodeInfo": {"kernelVersion": "6.1", "containerRuntimeVersion": "", "kubeletVersion": "v1.30.0-edgebus"},
    "capacity": {"cpu": "2", "memory": "1Ki", "pods": "110"},
}
EDGED = {
    "nodeInfo": {"kernelVersion": "6.1", "containerRuntimeVersion": "containerd://1.6.20"},
    "capacity": {"cpu": "2", "memory": "1Ki", "pods": "50"},
    "conditions": [{"type": "ContainerRuntimeReady", "status": "True"}],
}


def test_two_reporters_never_erase_each_other() -> None:
    n = node()
    n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert apply(n, "edged", 200, EDGED)
    # edgehub's report is older than edged's but it is another reporter: applied
    assert apply(n, "edgehub", 100, EDGEHUB)
    st = n["status"]
    assert st["nodeInfo"]["containerRuntimeVersion"] == "containerd://1.6.20", "an empty value never erases a known one"
    assert st["nodeInfo"]["kubeletVersion"] == "v1.30.0-edgebus" and st["addresses"] == EDGEHUB["addresses"]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Ready": "True", "ContainerRuntimeReady": "True"}
    # a stale report of the same reporter is dropped; a newer one replaces its condition
    assert not apply(n, "edged", 150, {"conditions": [{"type": "ContainerRuntimeReady", "status": "False"}]})
    down = copy.deepcopy(EDGED)
    down["nodeInfo"]["containerRuntimeVersion"] = ""
    down["conditions"] = [{"type": "ContainerRuntimeReady", "status": "False", "reason": "ContainerRuntimeUnavailable"}]
    assert apply(n, "edged", 300, down)
    conds = {c["type"]: c for c in n["status"]["conditions"]}
    assert conds["ContainerRuntimeReady"]["status"] == "False" and conds["Ready"]["status"] == "True"
    assert len(n["status"]["conditions"]) == 2
    assert n["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://1.6.20"
    ann = n["metadata"]["annotations"]
    assert ann[f"{logic.STATUS_TIME}.edged"] == "300" and ann[f"{logic.STATUS_TIME}.edgehub"] == "100"


def test_reporter_names_are_sanitised() -> None:
    assert logic.reporter("edged") == "edged" and logic.reporter("") == "edge" and logic.reporter("bad/name") == "edge"


def bound(**status: object) -> dict:
    return {"metadata": {"name": "p"}, "spec": {"nodeName": "edge-1", "terminationGracePeriodSeconds": 7}, "status": dict(status)}


def test_graceful_pod_delete_rules() -> None:
    marked = graceful_pod_delete(bound(phase="Running"), None)
    assert marked is not None and marked["metadata"]["deletionGracePeriodSeconds"] == 7 and marked["metadata"]["deletionTimestamp"]
    assert graceful_pod_delete(bound(phase="Running"), 3)["metadata"]["deletionGracePeriodSeconds"] == 3  # type: ignore[index]
    assert graceful_pod_delete(bound(phase="Running"), 0) is None, "gracePeriodSeconds=0 removes at once"
    assert graceful_pod_delete({"metadata": {}, "spec": {}}, None) is None, "an unbound pod is removed at once"
    assert graceful_pod_delete(bound(phase="Succeeded"), None) is None, "a finished pod is removed at once"
    again = graceful_pod_delete(marked, 30)
    assert again is marked, "a longer grace period does not extend a deletion"
    shorter = graceful_pod_delete(marked, 2)
    assert shorter is not None and shorter is not marked and shorter["metadata"]["deletionGracePeriodSeconds"] == 2
