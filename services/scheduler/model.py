"""What the scheduler knows of pods and nodes, parsed once per object (pure).

A :class:`PodInfo` holds a pod's effective requests (the larger of the sum of its
containers and its largest init container, plus ``overhead``), its tolerations, node
selector and affinity, pod (anti-)affinity terms, topology spread constraints and host
ports. A :class:`NodeInfo` holds a node's labels, taints, allocatable resources and the
pods bound to it, with their summed requests — the scheduler's cache keeps these current
from the watches, so a scheduling decision reads memory only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from edgebus.objects.quantity import amount
from edgebus.objects.taints import taints_of, tolerations_of

DEFAULT_SCHEDULER = "default-scheduler"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
#: what a container without requests counts as when scoring (Kubernetes' non-zero defaults)
NONZERO_CPU = 100
NONZERO_MEMORY = 200 * 1024 * 1024

PodKey = tuple[str, str]
#: the runtime handlers of a node that advertises none: containerd's default
DEFAULT_HANDLERS = frozenset({"runc"})


def _md(o: dict[str, Any]) -> dict[str, Any]:
    md = o.get("metadata")
    return md if isinstance(md, dict) else {}


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A pod (anti-)affinity term: pods ``selector`` selects, in ``namespaces`` (None: all),
    in the same ``topology_key`` domain."""

    selector: dict[str, Any] | None  # None selects nothing
    namespaces: frozenset[str] | None
    topology_key: str
    weight: int = 0


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    max_skew: int
    topology_key: str
    hard: bool  # DoNotSchedule (a filter) or ScheduleAnyway (a score)
    selector: dict[str, Any] | None
    min_domains: int = 1
    honor_affinity: bool = True
    honor_taints: bool = False


def _requests(spec: dict[str, Any]) -> tuple[dict[str, int], int, int]:
    """(effective requests by resource, non-zero cpu, non-zero memory)."""
    total: dict[str, int] = {}
    nz_cpu = nz_mem = 0
    for c in _list(spec.get("containers")):
        req = _dict(_dict(_dict(c).get("resources")).get("requests"))
        for k, v in req.items():
            try:
                total[k] = total.get(k, 0) + amount(k, v)
            except ValueError:
                continue
        cpu = total_of(req, "cpu")
        mem = total_of(req, "memory")
        nz_cpu += cpu if cpu else NONZERO_CPU
        nz_mem += mem if mem else NONZERO_MEMORY
    for c in _list(spec.get("initContainers")):
        req = _dict(_dict(_dict(c).get("resources")).get("requests"))
        for k, v in req.items():
            try:
                total[k] = max(total.get(k, 0), amount(k, v))
            except ValueError:
                continue
    for k, v in _dict(spec.get("overhead")).items():
        try:
            total[k] = total.get(k, 0) + amount(k, v)
        except ValueError:
            continue
    return total, nz_cpu, nz_mem


def total_of(req: dict[str, Any], resource: str) -> int:
    try:
        return amount(resource, req[resource]) if resource in req else 0
    except ValueError:
        return 0


def _terms(pod_ns: str, raw: Any, *, weighted: bool) -> tuple[AffinityTerm, ...]:
    out = []
    for t in _list(raw):
        t = _dict(t)
        w = 0
        if weighted:
            w = weight if isinstance(weight := t.get("weight"), int) else 0
            t = _dict(t.get("podAffinityTerm"))
        key = t.get("topologyKey")
        if not isinstance(key, str) or not key:
            continue
        nss: frozenset[str] | None
        if isinstance(t.get("namespaceSelector"), dict) and not t["namespaceSelector"]:
            nss = None  # an empty namespace selector: every namespace
        else:
            nss = frozenset(str(n) for n in _list(t.get("namespaces"))) or frozenset({pod_ns})
        sel = t.get("labelSelector")
        out.append(AffinityTerm(sel if isinstance(sel, dict) else None, nss, key, w))
    return tuple(out)


def _with_match_label_keys(selector: dict[str, Any], keys: Any, labels: dict[str, str]) -> dict[str, Any]:
    """A spread constraint's selector with its ``matchLabelKeys`` pinned to the pod's values."""
    extra = {k: labels[k] for k in _list(keys) if isinstance(k, str) and k in labels}
    if not extra:
        return selector
    sel = dict(selector)
    sel["matchLabels"] = {**_dict(sel.get("matchLabels")), **extra}
    return sel


@dataclass(slots=True)
class PodInfo:
    key: PodKey
    uid: str
    labels: dict[str, str]
    node: str
    scheduler: str
    requests: dict[str, int]
    nonzero_cpu: int
    nonzero_mem: int
    tolerations: list[dict[str, Any]]
    node_selector: dict[str, str]
    required_node_terms: list[dict[str, Any]] | None
    preferred_node_terms: list[tuple[int, dict[str, Any]]]
    affinity: tuple[AffinityTerm, ...] = ()
    anti_affinity: tuple[AffinityTerm, ...] = ()
    preferred_affinity: tuple[AffinityTerm, ...] = ()
    preferred_anti_affinity: tuple[AffinityTerm, ...] = ()
    spread: tuple[SpreadConstraint, ...] = ()
    host_ports: frozenset[tuple[str, str, int]] = frozenset()
    owner: str = ""
    terminating: bool = False
    finished: bool = False
    gated: bool = False
    #: ``spec.runtimeClassName``, and the handler of that RuntimeClass once resolved
    #: (:func:`with_runtime_class`; None = the node's default runtime)
    runtime_class: str = ""
    runtime_handler: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.key[0]

    @property
    def name(self) -> str:
        return self.key[1]

    @property
    def has_pod_affinity(self) -> bool:
        return bool(self.affinity or self.anti_affinity or self.preferred_affinity or self.preferred_anti_affinity)


def pod_info(pod: dict[str, Any]) -> PodInfo:
    md = _md(pod)
    spec = _dict(pod.get("spec"))
    ns = str(md.get("namespace") or "default")
    labels = {str(k): str(v) for k, v in _dict(md.get("labels")).items()}
    reqs, nz_cpu, nz_mem = _requests(spec)
    aff = _dict(spec.get("affinity"))
    na = _dict(aff.get("nodeAffinity"))
    required = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    required_terms = [_dict(t) for t in _list(_dict(required).get("nodeSelectorTerms"))] if isinstance(required, dict) else None
    preferred = [(int(p["weight"]), _dict(p.get("preference"))) for p in _list(na.get("preferredDuringSchedulingIgnoredDuringExecution")) if isinstance(p, dict) and isinstance(p.get("weight"), int)]
    pa, paa = _dict(aff.get("podAffinity")), _dict(aff.get("podAntiAffinity"))
    spread = []
    for c in _list(spec.get("topologySpreadConstraints")):
        c = _dict(c)
        if not isinstance(c.get("topologyKey"), str) or not isinstance(c.get("maxSkew"), int):
            continue
        spread.append(
            SpreadConstraint(
                max_skew=max(int(c["maxSkew"]), 1),
                topology_key=c["topologyKey"],
                hard=c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule",
                selector=_with_match_label_keys(c["labelSelector"], c.get("matchLabelKeys"), labels) if isinstance(c.get("labelSelector"), dict) else None,
                min_domains=c["minDomains"] if isinstance(c.get("minDomains"), int) and c["minDomains"] > 0 else 1,
                honor_affinity=c.get("nodeAffinityPolicy", "Honor") == "Honor",
                honor_taints=c.get("nodeTaintsPolicy", "Ignore") == "Honor",
            )
        )
    ports = set()
    for c in _list(spec.get("containers")):
        for p in _list(_dict(c).get("ports")):
            p = _dict(p)
            if isinstance(p.get("hostPort"), int) and p["hostPort"] > 0:
                ports.add((str(p.get("protocol") or "TCP"), str(p.get("hostIP") or "0.0.0.0"), int(p["hostPort"])))
    owner = next((str(o.get("uid") or "") for o in _list(md.get("ownerReferences")) if isinstance(o, dict) and o.get("controller")), "")
    return PodInfo(
        key=(ns, str(md.get("name") or "")),
        uid=str(md.get("uid") or ""),
        labels=labels,
        node=str(spec.get("nodeName") or ""),
        scheduler=str(spec.get("schedulerName") or DEFAULT_SCHEDULER),
        requests=reqs,
        nonzero_cpu=nz_cpu,
        nonzero_mem=nz_mem,
        tolerations=tolerations_of(pod),
        node_selector={str(k): str(v) for k, v in _dict(spec.get("nodeSelector")).items()},
        required_node_terms=required_terms,
        preferred_node_terms=preferred,
        affinity=_terms(ns, pa.get("requiredDuringSchedulingIgnoredDuringExecution"), weighted=False),
        anti_affinity=_terms(ns, paa.get("requiredDuringSchedulingIgnoredDuringExecution"), weighted=False),
        preferred_affinity=_terms(ns, pa.get("preferredDuringSchedulingIgnoredDuringExecution"), weighted=True),
        preferred_anti_affinity=_terms(ns, paa.get("preferredDuringSchedulingIgnoredDuringExecution"), weighted=True),
        spread=tuple(spread),
        host_ports=frozenset(ports),
        owner=owner,
        terminating=bool(md.get("deletionTimestamp")),
        finished=_dict(pod.get("status")).get("phase") in ("Succeeded", "Failed"),
        gated=bool(_list(spec.get("schedulingGates"))),
        runtime_class=str(spec.get("runtimeClassName") or ""),
        raw=pod,
    )


@dataclass(slots=True)
class NodeInfo:
    name: str
    labels: dict[str, str]
    taints: list[dict[str, Any]]
    unschedulable: bool
    allocatable: dict[str, int]
    pods: dict[PodKey, PodInfo] = field(default_factory=dict)
    requested: dict[str, int] = field(default_factory=dict)
    nonzero_cpu: int = 0
    nonzero_mem: int = 0
    ports: dict[tuple[str, str, int], int] = field(default_factory=dict)
    #: pods per controlling owner uid (not terminating), for the default spreading
    owners: dict[str, int] = field(default_factory=dict)
    #: the runtime handlers the node advertises (``status.runtimeHandlers``); a node that
    #: advertises none runs containers only (``runc``)
    runtime_handlers: frozenset[str] = DEFAULT_HANDLERS
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, p: PodInfo) -> None:
        if p.key in self.pods:
            self.remove(p.key)
        self.pods[p.key] = p
        for k, v in p.requests.items():
            self.requested[k] = self.requested.get(k, 0) + v
        self.nonzero_cpu += p.nonzero_cpu
        self.nonzero_mem += p.nonzero_mem
        for hp in p.host_ports:
            self.ports[hp] = self.ports.get(hp, 0) + 1
        if p.owner and not p.terminating:
            self.owners[p.owner] = self.owners.get(p.owner, 0) + 1

    def remove(self, key: PodKey) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        for k, v in p.requests.items():
            self.requested[k] = self.requested.get(k, 0) - v
        self.nonzero_cpu -= p.nonzero_cpu
        self.nonzero_mem -= p.nonzero_mem
        for hp in p.host_ports:
            n = self.ports.get(hp, 0) - 1
            if n > 0:
                self.ports[hp] = n
            else:
                self.ports.pop(hp, None)
        if p.owner and not p.terminating:
            n = self.owners.get(p.owner, 0) - 1
            if n > 0:
                self.owners[p.owner] = n
            else:
                self.owners.pop(p.owner, None)
        return p


def node_info(node: dict[str, Any]) -> NodeInfo:
    md = _md(node)
    alloc: dict[str, int] = {}
    for k, v in _dict(_dict(node.get("status")).get("allocatable")).items():
        try:
            alloc[str(k)] = amount(str(k), v)
        except ValueError:
            continue
    return NodeInfo(
        name=str(md.get("name") or ""),
        labels={str(k): str(v) for k, v in _dict(md.get("labels")).items()},
        taints=taints_of(node),
        unschedulable=bool(_dict(node.get("spec")).get("unschedulable")),
        allocatable=alloc,
        runtime_handlers=runtime_handlers_of(node),
        raw=node,
    )


def runtime_handlers_of(node: dict[str, Any]) -> frozenset[str]:
    found = {str(h["name"]) for h in _list(_dict(node.get("status")).get("runtimeHandlers")) if isinstance(h, dict) and isinstance(h.get("name"), str)}
    return frozenset(found) if found else DEFAULT_HANDLERS


def with_runtime_class(pod: PodInfo, rc: dict[str, Any] | None) -> PodInfo | str:
    """``pod`` with its RuntimeClass applied: the handler it needs, the class's
    ``scheduling.nodeSelector`` merged into the pod's and its tolerations added (as
    Kubernetes' RuntimeClass admission does); a message when the class does not exist or
    its node selector conflicts with the pod's."""
    if not pod.runtime_class:
        return pod
    if rc is None:
        return f'RuntimeClass "{pod.runtime_class}" not found'
    sched = _dict(rc.get("scheduling"))
    extra = {str(k): str(v) for k, v in _dict(sched.get("nodeSelector")).items()}
    clash = [k for k, v in extra.items() if k in pod.node_selector and pod.node_selector[k] != v]
    if clash:
        return f'the node selector of RuntimeClass "{pod.runtime_class}" conflicts with the pod\'s ({", ".join(sorted(clash))})'
    tols = [t for t in _list(sched.get("tolerations")) if isinstance(t, dict)]
    return replace(pod, runtime_handler=str(rc.get("handler") or ""), node_selector={**pod.node_selector, **extra}, tolerations=[*pod.tolerations, *tols])
