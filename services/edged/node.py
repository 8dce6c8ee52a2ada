"""The node facts edged reports: runtime version, kernel, OS, capacity, and the
``ContainerRuntimeReady`` condition (False with the reason when containerd is unavailable).

edgehub reports addresses and its own view of nodeInfo; cloudhub merges both reports
field by field, each with its own staleness check, so neither erases the other's facts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import edgebus
from edgebus import hostinfo

CONDITION = "ContainerRuntimeReady"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_status(*, runtime_ok: bool, runtime_version: str, runtime_error: str, endpoint: str, max_pods: int, transition: str) -> dict[str, Any]:
    cap = hostinfo.capacity(max_pods)
    m = hostinfo.machine()
    info = {
        **{k: m[k] for k in ("architecture", "operatingSystem", "osImage", "kernelVersion")},
        "kubeletVersion": f"v1.30.0-edgebus-{edgebus.__version__}",
        "containerRuntimeVersion": runtime_version if runtime_ok else "",
    }
    if runtime_ok:
        cond = {"status": "True", "reason": "ContainerRuntimeReady", "message": f"{runtime_version} answers on {endpoint}"}
    else:
        cond = {"status": "False", "reason": "ContainerRuntimeUnavailable", "message": f"container runtime unavailable at {endpoint}: {runtime_error}; pods cannot start on this node"}
    ts = now()
    return {
        "nodeInfo": info,
        "capacity": cap,
        "allocatable": dict(cap),
        "conditions": [{"type": CONDITION, **cond, "lastHeartbeatTime": ts, "lastTransitionTime": transition or ts}],
    }
