"""The API resources edgebus serves, and how their objects are keyed."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from edgebus import names


@dataclass(frozen=True, slots=True)
class Resource:
    plural: str
    kind: str
    group: str = ""  # "" = the core group
    version: str = "v1"
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    singular: str = ""
    #: discovery categories (``all``: what ``kubectl get all`` lists)
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def lmdb_key(self, namespace: str | None, name: str) -> str:
        """The edge store key: ``/<group>/<version>/<plural>/<namespace>/<name>``."""
        return f"/{self.group or 'core'}/{self.version}/{self.plural}/{namespace or names.CLUSTER_NS}/{name}"

    def lmdb_prefix(self, namespace: str | None = None) -> str:
        base = f"/{self.group or 'core'}/{self.version}/{self.plural}/"
        if namespace is None:
            return base
        return f"{base}{namespace}/"


NAMESPACES = Resource("namespaces", "Namespace", namespaced=False, short_names=("ns",), singular="namespace")
NODES = Resource("nodes", "Node", namespaced=False, short_names=("no",), singular="node")
PODS = Resource("pods", "Pod", short_names=("po",), singular="pod", categories=("all",))
CONFIGMAPS = Resource("configmaps", "ConfigMap", short_names=("cm",), singular="configmap")
SECRETS = Resource("secrets", "Secret", singular="secret")

EVENTS = Resource("events", "Event", short_names=("ev",), singular="event")
SERVICES = Resource("services", "Service", short_names=("svc",), singular="service", categories=("all",))
ENDPOINTS = Resource("endpoints", "Endpoints", short_names=("ep",), singular="endpoints")
DEVICES_GROUP = "devices.kubeedge.io"
DEVICES = Resource("devices", "Device", group=DEVICES_GROUP, version="v1beta1", singular="device")
DEVICEMODELS = Resource("devicemodels", "DeviceModel", group=DEVICES_GROUP, version="v1beta1", singular="devicemodel")

SERVICEACCOUNTS = Resource("serviceaccounts", "ServiceAccount", short_names=("sa",), singular="serviceaccount")
RBAC_GROUP = "rbac.authorization.k8s.io"
ROLES = Resource("roles", "Role", group=RBAC_GROUP, singular="role")
CLUSTERROLES = Resource("clusterroles", "ClusterRole", group=RBAC_GROUP, namespaced=False, singular="clusterrole")
ROLEBINDINGS = Resource("rolebindings", "RoleBinding", group=RBAC_GROUP, singular="rolebinding")
CLUSTERROLEBINDINGS = Resource("clusterrolebindings", "ClusterRoleBinding", group=RBAC_GROUP, namespaced=False, singular="clusterrolebinding")
RBAC_RESOURCES = (ROLES, CLUSTERROLES, ROLEBINDINGS, CLUSTERROLEBINDINGS)

# -- workloads (apps/v1, batch/v1) -------------------------------------------------------
DEPLOYMENTS = Resource("deployments", "Deployment", group="apps", short_names=("deploy",), singular="deployment", categories=("all",))
REPLICASETS = Resource("replicasets", "ReplicaSet", group="apps", short_names=("rs",), singular="replicaset", categories=("all",))
DAEMONSETS = Resource("daemonsets", "DaemonSet", group="apps", short_names=("ds",), singular="daemonset", categories=("all",))
STATEFULSETS = Resource("statefulsets", "StatefulSet", group="apps", short_names=("sts",), singular="statefulset", categories=("all",))
CONTROLLERREVISIONS = Resource("controllerrevisions", "ControllerRevision", group="apps", singular="controllerrevision")
JOBS = Resource("jobs", "Job", group="batch", singular="job", categories=("all",))
CRONJOBS = Resource("cronjobs", "CronJob", group="batch", short_names=("cj",), singular="cronjob", categories=("all",))
WORKLOADS = (DEPLOYMENTS, REPLICASETS, DAEMONSETS, STATEFULSETS, CONTROLLERREVISIONS, JOBS, CRONJOBS)
# -- KubeEdge's node groups (apps.kubeedge.io/v1alpha1) -----------------------------------
NODEGROUPS_GROUP = "apps.kubeedge.io"
NODEGROUPS = Resource("nodegroups", "NodeGroup", group=NODEGROUPS_GROUP, version="v1alpha1", namespaced=False, short_names=("ng",), singular="nodegroup")
EDGEAPPLICATIONS = Resource("edgeapplications", "EdgeApplication", group=NODEGROUPS_GROUP, version="v1alpha1", short_names=("eapp",), singular="edgeapplication")

RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (
        NAMESPACES, NODES, PODS, CONFIGMAPS, SECRETS, EVENTS, SERVICES, ENDPOINTS, DEVICES, DEVICEMODELS,
        SERVICEACCOUNTS, *RBAC_RESOURCES, *WORKLOADS, NODEGROUPS, EDGEAPPLICATIONS,
    )
}

#: ``metrics.k8s.io/v1beta1`` (``kubectl top``): read-only, served by the apiserver from the
#: nodes' latest usage reports, never stored as objects
METRICS_GROUP = "metrics.k8s.io"
METRICS: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource("nodes", "NodeMetrics", group=METRICS_GROUP, version="v1beta1", namespaced=False, singular=""),
        Resource("pods", "PodMetrics", group=METRICS_GROUP, version="v1beta1", singular=""),
    )
}

#: Kinds that are only ever created, answered and never stored (the access and identity
#: reviews): discovery lists them with the verb ``create``.
AUTHORIZATION_GROUP = "authorization.k8s.io"
AUTHENTICATION_GROUP = "authentication.k8s.io"
REVIEWS: dict[str, Resource] = {
    r.plural: r
    for r in (
        Resource("selfsubjectaccessreviews", "SelfSubjectAccessReview", group=AUTHORIZATION_GROUP, namespaced=False, singular="selfsubjectaccessreview"),
        Resource("selfsubjectrulesreviews", "SelfSubjectRulesReview", group=AUTHORIZATION_GROUP, namespaced=False, singular="selfsubjectrulesreview"),
        Resource("subjectaccessreviews", "SubjectAccessReview", group=AUTHORIZATION_GROUP, namespaced=False, singular="subjectaccessreview"),
        Resource("localsubjectaccessreviews", "LocalSubjectAccessReview", group=AUTHORIZATION_GROUP, singular="localsubjectaccessreview"),
        Resource("selfsubjectreviews", "SelfSubjectReview", group=AUTHENTICATION_GROUP, namespaced=False, singular="selfsubjectreview"),
    )
}

POLICY_GROUP = "policy"
PODDISRUPTIONBUDGETS = Resource("poddisruptionbudgets", "PodDisruptionBudget", group=POLICY_GROUP, short_names=("pdb",), singular="poddisruptionbudget")
RESOURCES[PODDISRUPTIONBUDGETS.plural] = PODDISRUPTIONBUDGETS

#: ``node.k8s.io/v1`` RuntimeClass (cluster-scoped; ``handler`` and ``scheduling`` at the top
#: level, no spec): which runtime a pod's ``runtimeClassName`` selects on its node.
NODE_GROUP = "node.k8s.io"
RUNTIMECLASSES = Resource("runtimeclasses", "RuntimeClass", group=NODE_GROUP, namespaced=False, singular="runtimeclass")
RESOURCES[RUNTIMECLASSES.plural] = RUNTIMECLASSES

#: ``events.k8s.io/v1`` Events: the same stored objects as core/v1 Events (Kubernetes
#: serves both), converted on the way in and out (:mod:`edgebus.objects.eventsv1`).
EVENTS_GROUP = "events.k8s.io"
EVENTS_V1 = Resource("events", "Event", group=EVENTS_GROUP, short_names=("ev",), singular="event")

#: Resources served as a second view of a stored one: (group, version, plural) -> the
#: view. ``RESOURCES`` (keyed by plural, the storage key) holds the stored form only;
#: :func:`stored` maps a view to it.
EVENT_VIEWS: dict[tuple[str, str, str], Resource] = {(EVENTS_V1.group, EVENTS_V1.version, EVENTS_V1.plural): EVENTS_V1}


def is_view(r: Resource) -> bool:
    return EVENT_VIEWS.get((r.group, r.version, r.plural)) == r


def stored(r: Resource) -> Resource:
    """The resource whose objects a (view) resource shows."""
    return RESOURCES[r.plural] if is_view(r) else r


def served() -> list[Resource]:
    """Every resource the API serves: the stored ones, then the views."""
    return [*RESOURCES.values(), *EVENT_VIEWS.values()]


#: Namespaces every cluster has.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class UnknownResource(LookupError):
    pass


def resolve(name: str) -> Resource:
    """A resource by plural, singular, kind or short name (case-insensitive), like kubectl."""
    n = name.lower()
    for r in RESOURCES.values():
        if n in (r.plural, r.singular, r.kind.lower(), *r.short_names):
            return r
    raise UnknownResource(f'the server doesn\'t have a resource type "{name}"')


def by_kind(api_version: str, kind: str) -> Resource:
    for r in served():
        if r.kind == kind and r.api_version == api_version:
            return r
    raise UnknownResource(f'no matches for kind "{kind}" in version "{api_version}"')


def by_lmdb_key(key: str) -> tuple[Resource, str | None, str]:
    parts = key.strip("/").split("/")
    if len(parts) != 5:
        raise UnknownResource(f"not an object key: {key}")
    _, _, plural, ns, name = parts
    r = RESOURCES.get(plural)
    if r is None:
        raise UnknownResource(f"unknown resource in key {key}")
    return r, (None if ns == names.CLUSTER_NS else ns), name


# -- object helpers ------------------------------------------------------------------


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def name_of(obj: dict[str, Any]) -> str:
    return str(meta(obj).get("name") or "")


def namespace_of(obj: dict[str, Any]) -> str | None:
    ns = meta(obj).get("namespace")
    return str(ns) if ns else None


def rv_of(obj: dict[str, Any]) -> int:
    try:
        return int(meta(obj).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def parse_time(ts: str | None) -> dt.datetime | None:
    if not ts:
        return None
    try:
        return dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        try:
            return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            return None
