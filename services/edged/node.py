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


def runtime_handlers(runtime_ok: bool, wasm: str) -> list[dict[str, Any]]:
    """``status.runtimeHandlers`` (Kubernetes' NodeRuntimeHandler list): ``runc`` while
    containerd answers, ``wasm`` when edged runs Wasm pods; the scheduler matches a
    RuntimeClass's handler against it."""
    out: list[dict[str, Any]] = []
    if runtime_ok:
        out.append({"name": "runc", "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}})
    if wasm:
        out.append({"name": "wasm", "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}})
    return out


def node_status(*, runtime_ok: bool, runtime_version: str, runtime_error: str, endpoint: str, max_pods: int, transition: str, wasm: str = "") -> dict[str, Any]:
    cap = hostinfo.capacity(max_pods)
    m = hostinfo.machine()
    info = {
        **{k: m[k] for k in ("architecture", "operatingSystem", "osImage", "kernelVersion")},
        "kubeletVersion": f"v1.30.0-edgebus-{edgebus.__version__}",
        # empty while containerd is down: the cloud keeps the last version it reported (the
        # Wasm runtime is told by runtimeHandlers and the condition's message)
        "containerRuntimeVersion": runtime_version if runtime_ok else "",
    }
    if runtime_ok:
        cond = {"status": "True", "reason": "ContainerRuntimeReady", "message": f"{runtime_version} answers on {endpoint}"}
    else:
        also = f"; Wasm pods run ({wasm})" if wasm else ""
        cond = {"status": "False", "reason": "ContainerRuntimeUnavailable", "message": f"container runtime unavailable at {endpoint}: {runtime_error}; container pods cannot start on this node{also}"}
    ts = now()
    return {
        "nodeInfo": info,
        "capacity": cap,
        "allocatable": dict(cap),
        "runtimeHandlers": runtime_handlers(runtime_ok, wasm),
        "conditions": [{"type": CONDITION, **cond, "lastHeartbeatTime": ts, "lastTransitionTime": transition or ts}],
    }
