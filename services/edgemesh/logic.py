"""edgemesh's rules (pure; no I/O): the service table, service addresses, DNS names, balancing.

**Addresses.** Without iptables there is no cluster IP to intercept, so every Service gets
an address of its own on this node's loopback, inside ``service_cidr`` (a /16 of
127.0.0.0/8 by default: Linux routes all of 127/8 to ``lo``, so binding needs no setup).
The proxy listens on ``<address>:<service port>`` and DNS answers that address. The
offset inside the range is a hash of ``<namespace>/<name>``, so a Service keeps its address
across restarts and on every node with the same range; a collision moves the younger
Service (by ``creationTimestamp``, then name) to the next free offset.

**Readiness.** An endpoint gets traffic only when ready: for a pod on this node the node's
own latest pod status decides (metamanager overlays what edged reported, so it is current
even while the cloud is unreachable); for any other endpoint, the Endpoints object does
(``addresses`` vs ``notReadyAddresses``, computed in the cloud).
"""

from __future__ import annotations

import ipaddress
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgebus.objects.services import ROUND_ROBIN, Endpoint, endpoints_for_port, lb_policy, service_ports

NsName = tuple[str, str]


def _md(o: dict[str, Any]) -> dict[str, Any]:
    md = o.get("metadata")
    return md if isinstance(md, dict) else {}


def _key(o: dict[str, Any]) -> NsName:
    md = _md(o)
    return (str(md.get("namespace") or ""), str(md.get("name") or ""))


# -- addresses ---------------------------------------------------------------------------


def allocate(services: list[dict[str, Any]], cidr: str, reserved: frozenset[str] = frozenset()) -> dict[NsName, str]:
    """One address per Service inside ``cidr`` (stable; see the module docstring); headless
    Services get none, and no Service gets an address in ``reserved`` (the node's DNS)."""
    net = ipaddress.ip_network(cidr, strict=False)
    size = net.num_addresses
    if size < 4:
        raise ValueError(f"service range {cidr} is too small")
    usable = size - 2  # not the network's first and last address
    order = sorted(services, key=lambda s: (str(_md(s).get("creationTimestamp") or ""), _key(s)))
    taken: set[int] = {int(ipaddress.ip_address(a)) - int(net.network_address) - 1 for a in reserved if _inside(a, net)}
    out: dict[NsName, str] = {}
    for s in order:
        if is_headless(s):
            continue
        ns, name = _key(s)
        if (ns, name) in out:
            continue
        off = zlib.crc32(f"{ns}/{name}".encode()) % usable
        for _ in range(usable):
            if off not in taken:
                break
            off = (off + 1) % usable
        else:
            break  # the range is full: later Services get no address
        taken.add(off)
        out[(ns, name)] = str(net.network_address + 1 + off)
    return out


def _inside(addr: str, net: Any) -> bool:
    try:
        a = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return a in net and a not in (net.network_address, net.broadcast_address)


def is_headless(svc: dict[str, Any]) -> bool:
    spec = svc.get("spec")
    return isinstance(spec, dict) and spec.get("clusterIP") == "None"


# -- the table ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortEntry:
    name: str
    port: int
    protocol: str
    endpoints: tuple[Endpoint, ...]

    @property
    def ready(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.ready)


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    namespace: str
    name: str
    address: str
    policy: str
    ports: tuple[PortEntry, ...]
    #: a headless Service (``clusterIP: None``): no address, DNS answers its ready endpoints
    headless: bool = False

    def dns_addresses(self) -> list[str]:
        """The A records of the Service's name: its node-local address, or for a headless
        Service the distinct addresses of its ready endpoints."""
        if not self.headless:
            return [self.address]
        return sorted({e.ip for p in self.ports for e in p.ready}, key=lambda ip: ipaddress.ip_address(ip) if _is_ip(ip) else ip)


@dataclass
class Table:
    node: str
    services: dict[NsName, ServiceEntry] = field(default_factory=dict)
    #: (address, port) -> (service, port) for the TCP listeners
    listeners: dict[tuple[str, int], tuple[NsName, PortEntry]] = field(default_factory=dict)
    #: (ip, port) of the endpoints on this node: what a tunnel from another node may reach
    local_targets: set[tuple[str, int]] = field(default_factory=set)

    def lookup(self, namespace: str, name: str) -> ServiceEntry | None:
        return self.services.get((namespace, name))

    def summary(self) -> list[dict[str, Any]]:
        return [
            {
                "namespace": s.namespace,
                "name": s.name,
                "address": s.address,
                "headless": s.headless,
                "policy": s.policy,
                "ports": [
                    {
                        "port": p.port,
                        "protocol": p.protocol,
                        "endpoints": [{"ip": e.ip, "port": e.port, "node": e.node, "ready": e.ready} for e in p.endpoints],
                    }
                    for p in s.ports
                ],
            }
            for s in sorted(self.services.values(), key=lambda s: (s.namespace, s.name))
        ]


def _is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
        return True
    except ValueError:
        return False


def local_pod_ready(pod: dict[str, Any] | None) -> bool | None:
    """The Ready condition of a pod as this node last reported it (None: no report)."""
    if not pod:
        return None
    conds = (pod.get("status") or {}).get("conditions")
    if not isinstance(conds, list):
        return None
    for c in conds:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def build_table(
    node: str, services: list[dict[str, Any]], endpoints: list[dict[str, Any]], pods: list[dict[str, Any]], cidr: str, reserved: frozenset[str] = frozenset()
) -> Table:
    """The node's service table from its local Services, Endpoints and pods."""
    addresses = allocate(services, cidr, reserved)
    eps = {_key(e): e for e in endpoints}
    local_pods = {_key(p): p for p in pods if (p.get("spec") or {}).get("nodeName") == node}
    table = Table(node)
    for svc in services:
        key = _key(svc)
        headless = is_headless(svc)
        addr = "" if headless else addresses.get(key)
        if addr is None:
            continue
        ports = []
        for sp in service_ports(svc):
            if sp.protocol != "TCP" and not headless:
                continue  # the proxy is TCP only (a headless Service's name answers every port's endpoints)
            found = []
            for e in endpoints_for_port(eps.get(key), sp):
                if e.node == node and e.pod is not None:
                    ready = local_pod_ready(local_pods.get(e.pod))
                    if ready is not None and ready != e.ready:
                        e = Endpoint(e.ip, e.port, e.node, ready, e.pod)
                if e.node in (node, ""):
                    table.local_targets.add((e.ip, e.port))
                found.append(e)
            pe = PortEntry(sp.name, sp.port, sp.protocol, tuple(found))
            ports.append(pe)
            if not headless:
                table.listeners[(addr, sp.port)] = (key, pe)
        table.services[key] = ServiceEntry(key[0], key[1], addr, lb_policy(svc), tuple(ports), headless)
    return table


# -- balancing ---------------------------------------------------------------------------


class Balancer:
    """The order in which to try a Service port's ready endpoints: the first is the pick
    (round-robin or random, per Service), the rest are fall-backs if it cannot be reached."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.counters: dict[tuple[NsName, int], int] = {}
        self.rng = rng or random.Random()

    def order(self, service: NsName, policy: str, port: PortEntry, limit: int) -> list[Endpoint]:
        ready = sorted(port.ready, key=lambda e: e.key)
        if not ready:
            return []
        if policy == ROUND_ROBIN:
            k = (service, port.port)
            i = self.counters.get(k, 0)
            self.counters[k] = i + 1
            start = i % len(ready)
        else:
            start = self.rng.randrange(len(ready))
        return [ready[(start + j) % len(ready)] for j in range(min(limit, len(ready)))]


# -- DNS names ---------------------------------------------------------------------------

ANSWER, NXDOMAIN, FORWARD = "answer", "nxdomain", "forward"


@dataclass(frozen=True, slots=True)
class Resolution:
    kind: str
    service: NsName | None = None


def resolve_name(qname: str, domain: str, default_namespace: str, known: Callable[[str, str], bool]) -> Resolution:
    """How to answer a query for ``qname``.

    ``<svc>.<ns>.svc.<domain>``: the Service, or NXDOMAIN (the cluster domain is ours);
    any other name under ``<domain>``: NXDOMAIN; ``<svc>.<ns>`` and ``<svc>`` (namespace
    ``default_namespace``): the Service when it exists, else upstream; anything else: upstream.
    """
    name = qname.lower().rstrip(".")
    dom = domain.lower().strip(".")
    labels = name.split(".") if name else []
    if name == dom or name.endswith("." + dom):
        head = labels[: len(labels) - len(dom.split("."))]
        if len(head) == 3 and head[2] == "svc" and known(head[1], head[0]):
            return Resolution(ANSWER, (head[1], head[0]))
        return Resolution(NXDOMAIN)
    if len(labels) == 2 and known(labels[1], labels[0]):
        return Resolution(ANSWER, (labels[1], labels[0]))
    if len(labels) == 1 and known(default_namespace, labels[0]):
        return Resolution(ANSWER, (default_namespace, labels[0]))
    return Resolution(FORWARD)
