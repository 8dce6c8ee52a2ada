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
PODS = Resource("pods", "Pod", short_names=("po",), singular="pod")
CONFIGMAPS = Resource("configmaps", "ConfigMap", short_names=("cm",), singular="configmap")
SECRETS = Resource("secrets", "Secret", singular="secret")

EVENTS = Resource("events", "Event", short_names=("ev",), singular="event")
SERVICES = Resource("services", "Service", short_names=("svc",), singular="service")
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

RESOURCES: dict[str, Resource] = {
    r.plural: r
    for r in (NAMESPACES, NODES, PODS, CONFIGMAPS, SECRETS, EVENTS, SERVICES, ENDPOINTS, DEVICES, DEVICEMODELS, SERVICEACCOUNTS, *RBAC_RESOURCES)
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
    for r in RESOURCES.values():
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
