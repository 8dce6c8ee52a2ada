"""A pod's DNS: ``dnsPolicy`` and ``dnsConfig`` (their checks, and the resolv.conf they
give, as the kubelet computes it). Pure: no I/O; edged reads the node's resolv.conf and
passes the result to the runtime as CRI ``DNSConfig``.

* ``ClusterFirst`` (the default): the node's cluster DNS (edgemesh), the search path
  ``<ns>.svc.<domain> svc.<domain> <domain>`` followed by the node's own search domains,
  ``options ndots:5``. A ``hostNetwork`` pod with ``ClusterFirst`` gets ``Default``
  instead, as in Kubernetes (``ClusterFirstWithHostNet`` asks for the cluster DNS).
  A node without cluster DNS configured falls back to ``Default``, as the kubelet does.
* ``Default``: the node's resolv.conf.
* ``None``: only what ``dnsConfig`` says (it must name at least one nameserver).
* ``dnsConfig`` (any policy): its nameservers and searches are appended (duplicates
  dropped), its options override the policy's by name; at most 3 nameservers and 32 search
  domains are used.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from edgebus.objects.checks import Causes

CLUSTER_FIRST = "ClusterFirst"
CLUSTER_FIRST_HOST_NET = "ClusterFirstWithHostNet"
DEFAULT = "Default"
NONE = "None"
POLICIES = (CLUSTER_FIRST, CLUSTER_FIRST_HOST_NET, DEFAULT, NONE)
MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
_SEARCH = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\.?$")


@dataclass(frozen=True)
class ResolvConf:
    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    #: ``name`` or ``name:value`` (resolv.conf's own spelling)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [f"nameserver {s}" for s in self.servers]
        if self.searches:
            out.append("search " + " ".join(self.searches))
        if self.options:
            out.append("options " + " ".join(self.options))
        return "\n".join(out) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if not parts:
            continue
        if parts[0] == "nameserver" and len(parts) > 1:
            servers.append(parts[1])
        elif parts[0] in ("search", "domain"):
            searches = parts[1:]  # the last one wins, as in the resolver
        elif parts[0] == "options":
            options.extend(parts[1:])
    return ResolvConf(servers, searches, options)


def _spec(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod.get("spec")
    return spec if isinstance(spec, dict) else {}


def check_pod_dns(c: Causes, spec: dict[str, Any]) -> None:
    policy = spec.get("dnsPolicy")
    if policy is not None and policy not in POLICIES:
        c.unsupported("spec.dnsPolicy", policy, POLICIES)
    cfg = spec.get("dnsConfig")
    if cfg is None:
        if policy == NONE:
            c.required("spec.dnsConfig")
            c.items[-1]["message"] = "Required value: must provide `dnsConfig` when `dnsPolicy` is None"
        return
    if not isinstance(cfg, dict):
        c.type_error("spec.dnsConfig", "an object", cfg)
        return
    ns = cfg.get("nameservers") or []
    if not isinstance(ns, list):
        c.type_error("spec.dnsConfig.nameservers", "a list", ns)
        ns = []
    if len(ns) > MAX_NAMESERVERS:
        c.invalid("spec.dnsConfig.nameservers", ns, f"must not have more than {MAX_NAMESERVERS} nameservers")
    for i, s in enumerate(ns):
        try:
            ipaddress.ip_address(s if isinstance(s, str) else "")
        except ValueError:
            c.invalid(f"spec.dnsConfig.nameservers[{i}]", s, "must be valid IP address")
    if policy == NONE and not ns:
        c.required("spec.dnsConfig.nameservers")
        c.items[-1]["message"] = "Required value: must provide at least one DNS nameserver when `dnsPolicy` is None"
    searches = cfg.get("searches") or []
    if not isinstance(searches, list):
        c.type_error("spec.dnsConfig.searches", "a list", searches)
        searches = []
    if len(searches) > MAX_SEARCHES:
        c.invalid("spec.dnsConfig.searches", searches, f"must not have more than {MAX_SEARCHES} search paths")
    if sum(len(str(s)) + 1 for s in searches) > MAX_SEARCH_CHARS:
        c.invalid("spec.dnsConfig.searches", searches, f"must not have more than {MAX_SEARCH_CHARS} characters (including spaces) in the search list")
    for i, s in enumerate(searches):
        if not isinstance(s, str) or not _SEARCH.fullmatch(s) or len(s) > 253:
            c.invalid(f"spec.dnsConfig.searches[{i}]", s, "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'")
    opts = cfg.get("options") or []
    if not isinstance(opts, list):
        c.type_error("spec.dnsConfig.options", "a list", opts)
        return
    for i, o in enumerate(opts):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str) or not o["name"]:
            c.required(f"spec.dnsConfig.options[{i}].name")
        elif o.get("value") is not None and not isinstance(o.get("value"), str):
            c.type_error(f"spec.dnsConfig.options[{i}].value", "a string", o.get("value"))


def effective_policy(pod: dict[str, Any], cluster_dns: list[str]) -> str:
    """The policy edged applies: ``ClusterFirst``, ``Default`` or ``None``."""
    spec = _spec(pod)
    policy = spec.get("dnsPolicy") or CLUSTER_FIRST
    if policy == CLUSTER_FIRST and spec.get("hostNetwork"):
        policy = DEFAULT
    if policy == CLUSTER_FIRST_HOST_NET:
        policy = CLUSTER_FIRST
    if policy == CLUSTER_FIRST and not cluster_dns:
        policy = DEFAULT
    return policy if policy in (CLUSTER_FIRST, DEFAULT, NONE) else DEFAULT


def _dedup(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for x in items:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _merge_options(base: list[str], extra: list[dict[str, Any]]) -> list[str]:
    by_name: dict[str, str] = {}
    for o in base:
        by_name[o.split(":", 1)[0]] = o
    for opt in extra:
        if isinstance(opt, dict) and isinstance(opt.get("name"), str) and opt["name"]:
            v = opt.get("value")
            by_name[opt["name"]] = f"{opt['name']}:{v}" if v not in (None, "") else opt["name"]
    return list(by_name.values())


def resolv_conf(pod: dict[str, Any], *, cluster_dns: list[str], cluster_domain: str, host: ResolvConf) -> ResolvConf | None:
    """The pod's resolv.conf; None: the node's own, unchanged (``Default`` without
    ``dnsConfig``: the runtime copies the host's file)."""
    spec = _spec(pod)
    md = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
    ns = str((md or {}).get("namespace") or "default")
    policy = effective_policy(pod, cluster_dns)
    cfg = spec.get("dnsConfig") if isinstance(spec.get("dnsConfig"), dict) else None
    if policy == DEFAULT and cfg is None:
        return None
    domain = cluster_domain.strip(".")
    if policy == CLUSTER_FIRST:
        base = ResolvConf(list(cluster_dns), [f"{ns}.svc.{domain}", f"svc.{domain}", domain, *host.searches], ["ndots:5"])
    elif policy == DEFAULT:
        base = host
    else:
        base = ResolvConf()
    cfg = cfg or {}
    servers = _dedup([*base.servers, *(str(s) for s in cfg.get("nameservers") or [])])[:MAX_NAMESERVERS]
    searches = _dedup([*base.searches, *(str(s).rstrip(".") for s in cfg.get("searches") or [])])[:MAX_SEARCHES]
    options = _merge_options(base.options, list(cfg.get("options") or []))
    return ResolvConf(servers, searches, options)
