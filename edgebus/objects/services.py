"""Services and Endpoints (core ``v1``): validation and the pure rules shared by the cloud's
endpointcontroller and the edge's edgemesh. No I/O.

A Service selects pods by label (``spec.selector``) and names its ports (``spec.ports``:
``port``, ``targetPort`` as a number or a container port name, ``protocol``). Its Endpoints
(same name) list, per group of identical resolved ports, the ready pod addresses
(``addresses``) and the others (``notReadyAddresses``), each with the pod's node
(``nodeName``) and a ``targetRef`` to the pod. Services without a selector keep the
Endpoints their user writes.

edgemesh balances each Service's connections by the annotation
``edgebus.io/lb-policy``: ``round-robin`` (the default) or ``random``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from edgebus.objects.checks import Causes, check_dns_label, check_dns_subdomain, checks
from edgebus.objects.shapes import as_dict

LB_ANNOTATION = "edgebus.io/lb-policy"
ROUND_ROBIN = "round-robin"
RANDOM = "random"
LB_POLICIES = (ROUND_ROBIN, RANDOM)

#: Endpoints the endpointcontroller computed carry this annotation (it never touches others)
MANAGED_BY_ANNOTATION = "edgebus.io/managed-by"
ENDPOINT_CONTROLLER = "endpointcontroller"

PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _is_port(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535


def _check_port_name(c: Causes, field: str, v: Any) -> None:
    if not isinstance(v, str) or len(v) > 15 or not _IANA_SVC_NAME.fullmatch(v) or "--" in v or not re.search("[a-z]", v):
        c.invalid(field, v, "must be no more than 15 characters, contain only lowercase alphanumerics and '-', and contain at least one letter")


@checks("services")
def check_service(c: Causes, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        c.required("spec")
        return
    t = spec.get("type")
    if t is not None and t not in SERVICE_TYPES:
        c.unsupported("spec.type", t, SERVICE_TYPES)
    sel = spec.get("selector")
    if sel is not None:
        if not isinstance(sel, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sel.items()):
            c.type_error("spec.selector", "a map of strings", sel)
    ports = spec.get("ports")
    if t == "ExternalName" and ports is None:
        ports = []
    if t != "ExternalName" and (not isinstance(ports, list) or not ports):
        c.required("spec.ports")
        ports = []
    if not isinstance(ports, list):
        c.type_error("spec.ports", "a list", ports)
        ports = []
    seen_names: set[str] = set()
    seen_ports: set[tuple[int, str]] = set()
    for i, p in enumerate(ports):
        f = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            c.type_error(f, "an object", p)
            continue
        name = p.get("name")
        if name not in (None, ""):
            check_dns_label(c, f"{f}.name", name)
            if name in seen_names:
                c.duplicate(f"{f}.name", name)
            seen_names.add(str(name))
        elif len(ports) > 1:
            c.required(f"{f}.name")
        if not _is_port(p.get("port")):
            c.invalid(f"{f}.port", p.get("port"), "must be between 1 and 65535, inclusive")
        proto = p.get("protocol", "TCP")
        if proto not in PROTOCOLS:
            c.unsupported(f"{f}.protocol", proto, PROTOCOLS)
        elif _is_port(p.get("port")):
            if (p["port"], proto) in seen_ports:
                c.duplicate(f"{f}", {"port": p["port"], "protocol": proto})
            seen_ports.add((p["port"], proto))
        tp = p.get("targetPort")
        if tp is not None and not _is_port(tp):
            if isinstance(tp, str) and not tp.isdigit():
                _check_port_name(c, f"{f}.targetPort", tp)
            elif not (isinstance(tp, str) and _is_port(int(tp))):
                c.invalid(f"{f}.targetPort", tp, "must be between 1 and 65535, inclusive, or a port name")
    ann = ((obj.get("metadata") or {}).get("annotations") or {}) if isinstance(obj.get("metadata"), dict) else {}
    if isinstance(ann, dict) and LB_ANNOTATION in ann and ann[LB_ANNOTATION] not in LB_POLICIES:
        c.unsupported(f"metadata.annotations[{LB_ANNOTATION}]", ann[LB_ANNOTATION], LB_POLICIES)


def _check_address(c: Causes, field: str, a: Any) -> None:
    if not isinstance(a, dict):
        c.type_error(field, "an object", a)
        return
    ip = a.get("ip")
    try:
        ipaddress.ip_address(ip if isinstance(ip, str) else "")
    except ValueError:
        c.invalid(f"{field}.ip", ip, "must be a valid IP address")
    if a.get("nodeName") not in (None, ""):
        check_dns_subdomain(c, f"{field}.nodeName", a.get("nodeName"))
    tr = a.get("targetRef")
    if tr is not None and not isinstance(tr, dict):
        c.type_error(f"{field}.targetRef", "an object", tr)


@checks("endpoints")
def check_endpoints(c: Causes, obj: dict[str, Any]) -> None:
    subsets = obj.get("subsets")
    if subsets is None:
        return
    if not isinstance(subsets, list):
        c.type_error("subsets", "a list", subsets)
        return
    for i, s in enumerate(subsets):
        f = f"subsets[{i}]"
        if not isinstance(s, dict):
            c.type_error(f, "an object", s)
            continue
        for key in ("addresses", "notReadyAddresses"):
            lst = s.get(key)
            if lst is None:
                continue
            if not isinstance(lst, list):
                c.type_error(f"{f}.{key}", "a list", lst)
                continue
            for j, a in enumerate(lst):
                _check_address(c, f"{f}.{key}[{j}]", a)
        ports = s.get("ports")
        if ports is not None and not isinstance(ports, list):
            c.type_error(f"{f}.ports", "a list", ports)
            continue
        for j, p in enumerate(ports or []):
            if not isinstance(p, dict) or not _is_port(p.get("port")):
                c.invalid(f"{f}.ports[{j}].port", p.get("port") if isinstance(p, dict) else p, "must be between 1 and 65535, inclusive")
            elif p.get("protocol", "TCP") not in PROTOCOLS:
                c.unsupported(f"{f}.ports[{j}].protocol", p.get("protocol"), PROTOCOLS)


# -- reading services and endpoints (shared by the controller and edgemesh) --------------------


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    protocol: str
    target: int | str  # a number, or a container port name


def service_ports(svc: dict[str, Any]) -> list[ServicePort]:
    """The Service's well-formed ports (``targetPort`` defaults to ``port``)."""
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        if not isinstance(p, dict) or not _is_port(p.get("port")):
            continue
        tp: Any = p.get("targetPort", p["port"])
        if isinstance(tp, str) and tp.isdigit():
            tp = int(tp)
        if not (_is_port(tp) or (isinstance(tp, str) and tp)):
            tp = p["port"]
        out.append(ServicePort(str(p.get("name") or ""), int(p["port"]), str(p.get("protocol") or "TCP"), tp))
    return out


def service_selector(svc: dict[str, Any]) -> dict[str, str] | None:
    """The Service's selector, or None when it has none (its Endpoints are the user's)."""
    sel = (svc.get("spec") or {}).get("selector")
    if not isinstance(sel, dict) or not sel:
        return None
    return {str(k): str(v) for k, v in sel.items()}


def lb_policy(svc: dict[str, Any]) -> str:
    ann = (svc.get("metadata") or {}).get("annotations") or {}
    v = ann.get(LB_ANNOTATION) if isinstance(ann, dict) else None
    return v if v in LB_POLICIES else ROUND_ROBIN


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend address of one Service port."""

    ip: str
    port: int
    node: str  # "" when the Endpoints do not say (treated as reachable locally)
    ready: bool
    pod: tuple[str, str] | None  # (namespace, name) of the pod, from targetRef

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.ip, self.port, self.node)


def endpoints_for_port(ep: dict[str, Any] | None, port: ServicePort) -> list[Endpoint]:
    """The addresses of ``port`` in an Endpoints object: matched by port name (as
    kube-proxy does; an unnamed Service port matches an unnamed or only endpoint port)."""
    out: list[Endpoint] = []
    for s in (ep or {}).get("subsets") or []:
        if not isinstance(s, dict):
            continue
        ports = [p for p in s.get("ports") or [] if isinstance(p, dict) and _is_port(p.get("port"))]
        match = [p for p in ports if str(p.get("name") or "") == port.name and str(p.get("protocol") or "TCP") == port.protocol]
        if not match and not port.name and len(ports) == 1:
            match = ports
        if not match:
            continue
        target = int(match[0]["port"])
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for a in s.get(key) or []:
                if not isinstance(a, dict) or not isinstance(a.get("ip"), str):
                    continue
                tr = as_dict(a.get("targetRef"))
                pod = None
                if tr.get("kind", "Pod") == "Pod" and tr.get("name"):
                    pod = (str(tr.get("namespace") or (ep or {}).get("metadata", {}).get("namespace") or ""), str(tr["name"]))
                out.append(Endpoint(a["ip"], target, str(a.get("nodeName") or ""), ready, pod))
    return out
