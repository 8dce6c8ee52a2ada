"""Service cluster IPs (pure: no I/O): the service CIDR, what a Service asks for, the
checks of a user-set address, and the order in which free addresses are tried.

Kubernetes' rules, as the apiserver applies them on create:

* ``spec.clusterIP`` empty (or absent): an address is allocated from the service CIDR;
* ``clusterIP: None``: a headless Service (DNS answers its endpoints), nothing allocated;
* a user-set address must be an IPv4 address inside the CIDR (not its network or
  broadcast address) and not held by another Service;
* ``type: ExternalName`` has no cluster IP;
* on update the address is immutable (an update that leaves it out keeps it).

The allocator (:mod:`edgebus.clusterips`) reserves addresses in a KV bucket with a
create-only write per address, so two apiservers never hand out the same one.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from typing import Any

from edgebus.objects.checks import Causes

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
HEADLESS = "None"


def parse_cidr(cidr: str) -> ipaddress.IPv4Network:
    """The service range (``ValueError`` for anything but an IPv4 network of 4+ addresses)."""
    net = ipaddress.ip_network(cidr.strip(), strict=False)
    if not isinstance(net, ipaddress.IPv4Network):
        raise ValueError(f"service CIDR {cidr!r}: only IPv4 is supported")
    if net.num_addresses < 4:
        raise ValueError(f"service CIDR {cidr!r} is too small (at least a /30)")
    return net


def _spec(svc: dict[str, Any]) -> dict[str, Any]:
    spec = svc.get("spec")
    return spec if isinstance(spec, dict) else {}


def requested(svc: dict[str, Any]) -> str | None:
    """What the Service asks for: an address, ``"None"`` (headless), or None (allocate one;
    also None for ExternalName, see :func:`wants_ip`)."""
    spec = _spec(svc)
    ip = spec.get("clusterIP")
    if ip in (None, ""):
        ips = spec.get("clusterIPs")
        if isinstance(ips, list) and ips and isinstance(ips[0], str) and ips[0]:
            ip = ips[0]
    return str(ip) if ip not in (None, "") else None


def wants_ip(svc: dict[str, Any]) -> bool:
    """Whether the Service holds a cluster IP at all (not ExternalName, not headless)."""
    return _spec(svc).get("type") != "ExternalName" and requested(svc) != HEADLESS


def is_headless(svc: dict[str, Any]) -> bool:
    return _spec(svc).get("clusterIP") == HEADLESS


def check_requested(c: Causes, svc: dict[str, Any], net: ipaddress.IPv4Network) -> None:
    """The checks of a user-set ``clusterIP`` (its syntax and its range)."""
    spec = _spec(svc)
    ip = requested(svc)
    ips = spec.get("clusterIPs")
    if ips is not None:
        if not isinstance(ips, list) or not all(isinstance(x, str) for x in ips):
            c.type_error("spec.clusterIPs", "a list of strings", ips)
        elif len(ips) > 1:
            c.invalid("spec.clusterIPs", ips, "only one (IPv4) address is supported")
        elif ips and spec.get("clusterIP") not in (None, "") and ips[0] != spec.get("clusterIP"):
            c.invalid("spec.clusterIPs[0]", ips[0], "must match `spec.clusterIP`")
    if ip is None:
        return
    if ip == HEADLESS:
        if spec.get("type") not in (None, "ClusterIP"):
            c.invalid("spec.clusterIP", ip, "may not be set to 'None' for this Service type")
        return
    if spec.get("type") == "ExternalName":
        c.invalid("spec.clusterIP", ip, "may not be set for ExternalName services")
        return
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        c.invalid("spec.clusterIP", ip, "must be empty, 'None', or a valid IP address")
        return
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        c.invalid("spec.clusterIP", ip, f"provided IP is not in the valid range. The range of valid IPs is {net}")


def candidates(net: ipaddress.IPv4Network, rng: random.Random | None = None) -> Iterator[str]:
    """Every usable address of ``net`` once, from a random start, wrapping around (the first
    address, ``.1`` of the range, is kept for the cluster's own ``kubernetes`` Service as
    Kubernetes does, so it is tried last)."""
    first = int(net.network_address) + 1
    size = net.num_addresses - 2  # not the network's first and last address
    rest = size - 1
    start = (rng or random).randrange(rest) if rest > 0 else 0
    for i in range(rest):
        yield str(ipaddress.IPv4Address(first + 1 + (start + i) % rest))
    yield str(ipaddress.IPv4Address(first))


def assign(svc: dict[str, Any], ip: str | None) -> None:
    """Write the allocated address (or none) into the Service, as Kubernetes shows it."""
    spec = svc.setdefault("spec", {})
    if ip is None:
        if spec.get("type") != "ExternalName" and spec.get("clusterIP") == HEADLESS:
            spec["clusterIPs"] = [HEADLESS]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        return
    spec["clusterIP"] = ip
    spec["clusterIPs"] = [ip]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")


def keep_on_update(current: dict[str, Any], new: dict[str, Any], c: Causes) -> None:
    """An update keeps the Service's address: left out, it is carried over; changed, it is
    an error (``field is immutable``), as Kubernetes."""
    cur, spec = _spec(current), new.get("spec")
    if not isinstance(spec, dict):
        return
    have = cur.get("clusterIP")
    if have in (None, ""):
        return
    want = spec.get("clusterIP")
    if want in (None, ""):
        ips = spec.get("clusterIPs")
        want = ips[0] if isinstance(ips, list) and ips and ips[0] else None
    if want in (None, ""):
        spec["clusterIP"] = have
        if "clusterIPs" in cur:
            spec["clusterIPs"] = cur["clusterIPs"]
        for k in ("ipFamilies", "ipFamilyPolicy"):
            if k in cur:
                spec.setdefault(k, cur[k])
        return
    if want != have:
        c.invalid("spec.clusterIP", want, "field is immutable")
