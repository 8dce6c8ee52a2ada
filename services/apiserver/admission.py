"""Admission of writes the generic routes make, after validation and before the store:

* **Pod Security**: a pod created (or its spec changed) must meet its namespace's level
  (label ``pod-security.kubernetes.io/enforce``; unlabelled namespaces get
  ``apiserver.pod_security_default``, ``baseline``): no hostPath, privileged containers,
  host namespaces ... unless the namespace is labelled ``privileged``;
* **RBAC escalation** (with authentication on): a Role or ClusterRole may only grant what
  its author holds (or the author has ``escalate`` on it), a binding only a role whose
  permissions its author holds (or ``bind`` on it), as Kubernetes' RBAC storage checks.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from edgebus.auth import Attributes, UserInfo, rules_of, uncovered
from edgebus.auth import podsecurity
from edgebus.auth.guard import USER_KEY
from edgebus.auth.user import ANONYMOUS_USER
from edgebus.errors import Forbidden, NotFound
from edgebus.objects import CLUSTERROLEBINDINGS, CLUSTERROLES, NAMESPACES, PODS, ROLEBINDINGS, ROLES, Resource
from edgebus.objectstore import ObjectStore
from services.apiserver.security import Security


class Admission:
    def __init__(self, store: ObjectStore, security: Security, *, pod_security_default: str = "baseline") -> None:
        self.store = store
        self.security = security
        self.pod_security_default = pod_security_default

    async def admit(self, request: Request, resource: Resource, obj: dict[str, Any], *, current: dict[str, Any] | None = None, subresource: str | None = None) -> None:
        if subresource is not None:
            return
        if resource is PODS:
            await self._pod_security(obj, current)
        elif resource in (ROLES, CLUSTERROLES, ROLEBINDINGS, CLUSTERROLEBINDINGS) and self.security.enabled:
            await self._escalation(request.scope.get(USER_KEY) or ANONYMOUS_USER, resource, obj)

    async def _pod_security(self, pod: dict[str, Any], current: dict[str, Any] | None) -> None:
        md = pod.get("metadata") or {}
        ns = md.get("namespace") or "default"
        if current is None and md.get("resourceVersion"):
            try:
                current = await self.store.get(PODS, ns, str(md.get("name") or ""))
            except NotFound:
                current = None
        if current is not None and current.get("spec") == pod.get("spec"):
            return  # metadata-only updates are not evaluated (as Kubernetes)
        try:
            namespace = await self.store.get(NAMESPACES, None, ns)
        except NotFound:
            return  # the store answers that one
        podsecurity.check(pod, podsecurity.namespace_level(namespace, self.pod_security_default))

    async def _escalation(self, user: UserInfo, resource: Resource, obj: dict[str, Any]) -> None:
        if user.is_master:
            return
        md = obj.get("metadata") or {}
        ns, name = str(md.get("namespace") or "") if resource.namespaced else "", str(md.get("name") or "")
        rbac = self.security.authorizer.rbac
        if resource in (ROLES, CLUSTERROLES):
            if await self._may(user, "escalate", resource, ns, name):
                return
            wanted = rules_of(obj)
        else:
            ref = obj.get("roleRef") or {}
            kind, role = str(ref.get("kind") or ""), str(ref.get("name") or "")
            role_resource = CLUSTERROLES if kind == "ClusterRole" else ROLES
            if await self._may(user, "bind", role_resource, ns if role_resource is ROLES else "", role):
                return
            if kind == "ClusterRole":
                wanted = rbac.cluster_roles.get(role)
            else:
                wanted = rbac.roles.get((ns, role))
            if wanted is None:
                return  # a binding to a role that does not exist grants nothing (yet), as Kubernetes allows
        held, _ = rbac.rules_for(user, ns)
        missing = uncovered(held, wanted)
        if missing:
            groups = " ".join(json.dumps(g) for g in user.groups)
            lines = "\n".join(m.describe() for m in missing)
            raise Forbidden(
                f'{resource.plural}.{resource.group} "{name}" is forbidden: user "{user.name}" (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n{lines}',
                details={"name": name, "group": resource.group, "kind": resource.plural},
            )

    async def _may(self, user: UserInfo, verb: str, resource: Resource, ns: str, name: str) -> bool:
        a = Attributes(verb=verb, resource_request=True, api_group=resource.group, api_version=resource.version, resource=resource.plural, namespace=ns, name=name)
        return (await self.security.authorize(user, a)).allowed

