"""Endpoints from Services and pods (pure; no I/O).

For a Service with a selector, its Endpoints list every pod of its namespace that the
selector matches, has an IP (``status.podIP``), is not terminating (``deletionTimestamp``)
and has not finished (phase ``Succeeded``/``Failed``): pods whose ``Ready`` condition is
``True`` under ``addresses``, the others under ``notReadyAddresses``. Each Service port's
``targetPort`` is resolved per pod (a number, or the name of a container port); pods with
the same resolved ports share a subset, as in Kubernetes. Services without a selector are
left alone: their Endpoints are their user's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgebus.objects.services import ENDPOINT_CONTROLLER, MANAGED_BY_ANNOTATION, ServicePort, service_ports, service_selector

NsName = tuple[str, str]


def _md(o: dict[str, Any]) -> dict[str, Any]:
    md = o.get("metadata")
    return md if isinstance(md, dict) else {}


def pod_ready(pod: dict[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_serving(pod: dict[str, Any]) -> bool:
    """Can the pod be an endpoint at all (ready or not)?"""
    st = pod.get("status") or {}
    return bool(st.get("podIP")) and not _md(pod).get("deletionTimestamp") and st.get("phase") not in ("Succeeded", "Failed")


def selects(selector: dict[str, str], pod: dict[str, Any]) -> bool:
    labels = _md(pod).get("labels") or {}
    return isinstance(labels, dict) and all(labels.get(k) == v for k, v in selector.items())


def resolve_port(pod: dict[str, Any], port: ServicePort) -> int | None:
    if isinstance(port.target, int):
        return port.target
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in (c or {}).get("ports") or [] if isinstance(c, dict) else []:
            if isinstance(p, dict) and p.get("name") == port.target and isinstance(p.get("containerPort"), int):
                if str(p.get("protocol") or "TCP") == port.protocol:
                    return int(p["containerPort"])
    return None


def subsets(svc: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Endpoints subsets of ``svc`` given the pods of its namespace."""
    selector = service_selector(svc)
    if selector is None:
        return []
    ports = service_ports(svc)
    groups: dict[tuple[tuple[str, int, str], ...], dict[str, list[dict[str, Any]]]] = {}
    for pod in pods:
        if not selects(selector, pod) or not pod_serving(pod):
            continue
        resolved = []
        for p in ports:
            target = resolve_port(pod, p)
            if target is not None:
                resolved.append((p.name, target, p.protocol))
        if not resolved:
            continue
        md = _md(pod)
        addr: dict[str, Any] = {
            "ip": str(pod["status"]["podIP"]),
            "targetRef": {"kind": "Pod", "namespace": md.get("namespace") or "", "name": md.get("name") or "", "uid": md.get("uid") or ""},
        }
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            addr["nodeName"] = node
        g = groups.setdefault(tuple(sorted(resolved)), {"addresses": [], "notReadyAddresses": []})
        g["addresses" if pod_ready(pod) else "notReadyAddresses"].append(addr)
    out = []
    for key in sorted(groups):
        g = groups[key]
        subset: dict[str, Any] = {}
        for k in ("addresses", "notReadyAddresses"):
            if g[k]:
                subset[k] = sorted(g[k], key=lambda a: (a["ip"], a["targetRef"]["name"]))
        subset["ports"] = [{"name": n, "port": port, "protocol": proto} if n else {"port": port, "protocol": proto} for n, port, proto in key]
        out.append(subset)
    return out


def desired_endpoints(svc: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    md = _md(svc)
    meta: dict[str, Any] = {
        "name": md.get("name"),
        "namespace": md.get("namespace"),
        "annotations": {MANAGED_BY_ANNOTATION: ENDPOINT_CONTROLLER},
    }
    if md.get("labels"):
        meta["labels"] = dict(md["labels"])
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": subsets(svc, pods)}


def managed(ep: dict[str, Any] | None) -> bool:
    return bool(ep) and (_md(ep or {}).get("annotations") or {}).get(MANAGED_BY_ANNOTATION) == ENDPOINT_CONTROLLER


def same(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Does the stored Endpoints already say what ``desired`` says?"""
    if current is None:
        return False
    cm, dm = _md(current), _md(desired)
    return (
        (current.get("subsets") or []) == desired["subsets"]
        and (cm.get("labels") or {}) == (dm.get("labels") or {})
        and managed(current)
    )


CREATE, UPDATE, DELETE = "create", "update", "delete"


@dataclass(frozen=True, slots=True)
class Action:
    op: str
    namespace: str
    name: str
    endpoints: dict[str, Any] | None


@dataclass
class Index:
    """Services, pods and Endpoints by namespace/name (the controller's view of the cloud)."""

    services: dict[NsName, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # ns -> name -> pod
    endpoints: dict[NsName, dict[str, Any]] = field(default_factory=dict)

    def apply(self, plural: str, obj: dict[str, Any], *, deleted: bool) -> set[NsName]:
        """Record a change; return the Services whose Endpoints it may change."""
        md = _md(obj)
        ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
        if plural == "services":
            if deleted:
                self.services.pop((ns, name), None)
            else:
                self.services[(ns, name)] = obj
            return {(ns, name)}
        if plural == "endpoints":
            if deleted:
                self.endpoints.pop((ns, name), None)
            else:
                self.endpoints[(ns, name)] = obj
            return {(ns, name)}
        if plural != "pods":
            return set()
        bucket = self.pods.setdefault(ns, {})
        old = bucket.pop(name, None)
        if not deleted:
            bucket[name] = obj
        out = set()
        for (sns, sname), svc in self.services.items():
            if sns != ns:
                continue
            sel = service_selector(svc)
            if sel is not None and ((old is not None and selects(sel, old)) or (not deleted and selects(sel, obj))):
                out.add((sns, sname))
        return out

    def all(self) -> set[NsName]:
        return set(self.services) | {k for k, ep in self.endpoints.items() if managed(ep)}

    def reconcile(self, key: NsName) -> Action | None:
        """What makes the Endpoints of ``key`` right (None: nothing to do)."""
        ns, name = key
        svc = self.services.get(key)
        current = self.endpoints.get(key)
        if svc is None or service_selector(svc) is None:
            if current is not None and managed(current):
                return Action(DELETE, ns, name, None)
            return None
        want = desired_endpoints(svc, list(self.pods.get(ns, {}).values()))
        if same(current, want):
            return None
        return Action(CREATE if current is None else UPDATE, ns, name, want)
