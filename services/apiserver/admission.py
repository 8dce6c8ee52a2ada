"""Admission of writes the generic routes make, after validation and before the store:

* **Pod Security**: a pod created (or its spec changed) must meet its namespace's level
  (label ``pod-security.kubernetes.io/enforce``; unlabelled namespaces get
  ``apiserver.pod_security_default``, ``baseline``): no hostPath, privileged containers,
  host namespaces ... unless the namespace is labelled ``privileged``;
* **RuntimeClass**: a pod created with a ``runtimeClassName`` that names no RuntimeClass
  is refused (403, as Kubernetes' RuntimeClass admission plugin);
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
from edgebus.objects import CLUSTERROLEBINDINGS, CLUSTERROLES, CRONJOBS, EDGEAPPLICATIONS, NAMESPACES, PODS, ROLEBINDINGS, ROLES, RUNTIMECLASSES, WORKLOADS, Resource
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
            await self._runtime_class(obj, current)
            await self._pod_security(obj, current)
        elif resource in WORKLOADS or resource is EDGEAPPLICATIONS:
            await self._template_security(resource, obj)
        elif resource in (ROLES, CLUSTERROLES, ROLEBINDINGS, CLUSTERROLEBINDINGS) and self.security.enabled:
            await self._escalation(request.scope.get(USER_KEY) or ANONYMOUS_USER, resource, obj)

    async def _runtime_class(self, pod: dict[str, Any], current: dict[str, Any] | None) -> None:
        rc = (pod.get("spec") or {}).get("runtimeClassName")
        if not rc or current is not None or (pod.get("metadata") or {}).get("resourceVersion"):
            return  # only creations are checked (the field is immutable)
        try:
            await self.store.get(RUNTIMECLASSES, None, str(rc))
        except NotFound:
            name = str((pod.get("metadata") or {}).get("name") or "")
            what = f'pods "{name}"' if name else "pods"
            raise Forbidden(f'{what} is forbidden: pod rejected: RuntimeClass "{rc}" not found', details={"name": name, "kind": "pods"} if name else {"kind": "pods"}) from None

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
        level = await self._level(ns)
        if level is not None:
            podsecurity.check(pod, level)

    async def _level(self, ns: str) -> str | None:
        """The Pod Security level of namespace ``ns`` (None when it does not exist: the store
        answers that one)."""
        try:
            namespace = await self.store.get(NAMESPACES, None, ns)
        except NotFound:
            return None
        return podsecurity.namespace_level(namespace, self.pod_security_default)

    async def _template_security(self, resource: Resource, obj: dict[str, Any]) -> None:
        """The pod templates of a workload are held to the namespace's Pod Security level when
        the workload is written. Kubernetes only warns here and refuses the pods; edgebus's
        workload controllers write pods to the store themselves, so the template is where
        the level is enforced."""
        md = obj.get("metadata") or {}
        ns = md.get("namespace") or "default"
        templates = pod_templates(resource, obj)
        level = await self._level(ns) if templates else None
        if level is None:
            return
        for where, spec in templates:
            found = podsecurity.violations({"metadata": {}, "spec": spec}, level)
            if found:
                name = str(md.get("name") or "")
                raise Forbidden(
                    f'{resource.plural} "{name}" is forbidden: {where} violates PodSecurity "{level}:latest": {", ".join(found)}',
                    details={"name": name, "kind": resource.plural},
                )

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
            bound = rbac.cluster_roles.get(role) if kind == "ClusterRole" else rbac.roles.get((ns, role))
            if bound is None:
                return  # a binding to a role that does not exist grants nothing (yet), as Kubernetes allows
            wanted = bound
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


def pod_templates(resource: Resource, obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The pod specs a workload (or an EdgeApplication's manifests) will create pods from,
    with where each is."""

    def dig(o: Any, *path: str) -> Any:
        for k in path:
            o = o.get(k) if isinstance(o, dict) else None
        return o

    out: list[tuple[str, dict[str, Any]]] = []
    if resource is EDGEAPPLICATIONS:
        for i, m in enumerate(dig(obj, "spec", "workloadTemplate", "manifests") or []):
            spec = dig(m, "spec", "template", "spec")
            if isinstance(spec, dict):
                out.append((f"spec.workloadTemplate.manifests[{i}].spec.template", spec))
        return out
    path = ("spec", "jobTemplate", "spec", "template") if resource is CRONJOBS else ("spec", "template")
    spec = dig(obj, *path, "spec")
    if isinstance(spec, dict):
        out.append((".".join(path), spec))
    return out
