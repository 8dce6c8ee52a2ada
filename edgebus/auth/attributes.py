"""What a request asks to do, in Kubernetes' authorization terms (``authorizer.Attributes``),
derived from its method and path as Kubernetes' ``RequestInfoFactory`` does.

* ``/api/v1/...`` and ``/apis/<group>/<version>/...`` with a resource are *resource
  requests*: verb (``get list watch create update patch delete deletecollection``), API
  group, resource, subresource, namespace, name;
* everything else (``/healthz``, ``/version``, discovery at ``/api``, ``/apis/<group>``,
  ``/openapi/v3``, ...) is a *non-resource request*: the lower-cased method and the path.

The 403 message is Kubernetes' too (``pods "web" is forbidden: User "jane" cannot delete
resource "pods" in API group "" in the namespace "default"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

from edgebus.errors import Forbidden

#: Subresources that follow a namespace's own name (``/api/v1/namespaces/x/status``).
NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True, slots=True)
class Attributes:
    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    @property
    def read_only(self) -> bool:
        return self.verb in ("get", "list", "watch")


def _truthy(query: dict[str, list[str]], key: str) -> bool:
    v = (query.get(key) or [""])[0].strip().lower()
    return v in ("true", "1")


def request_attributes(method: str, path: str, query: str = "") -> Attributes:
    """Kubernetes' request info for ``method path?query``."""
    method = method.upper()
    parts = [p for p in path.strip("/").split("/") if p]
    nonresource = Attributes(verb=method.lower(), resource_request=False, path=path or "/")
    if len(parts) < 2 or parts[0] not in ("api", "apis"):
        return nonresource
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 3:
            return nonresource
        group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return nonresource  # discovery of a group-version
    q = parse_qs(query, keep_blank_values=True)
    verb = ""
    if rest[0] == "watch":  # the deprecated /watch/ path prefix
        verb, rest = "watch", rest[1:]
        if not rest:
            return nonresource
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not verb:
        if method in ("GET", "HEAD"):
            verb = "get" if name else ("watch" if _truthy(q, "watch") else "list")
        elif method == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            verb = _WRITE_VERBS.get(method, method.lower())
    return Attributes(
        verb=verb,
        resource_request=True,
        path=path,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )


def forbidden_message(user: str, a: Attributes) -> str:
    """The reason part of Kubernetes' 403: ``User "u" cannot <verb> ...``."""
    if not a.resource_request:
        return f'User "{user}" cannot {a.verb} path "{a.path}"'
    if a.namespace:
        return f'User "{user}" cannot {a.verb} resource "{a.combined_resource}" in API group "{a.api_group}" in the namespace "{a.namespace}"'
    return f'User "{user}" cannot {a.verb} resource "{a.combined_resource}" in API group "{a.api_group}" at the cluster scope'


def forbidden(user: str, a: Attributes, reason: str = "") -> Forbidden:
    """The 403 Kubernetes answers (``responsewriters.Forbidden``), as an error to raise."""
    msg = forbidden_message(user, a)
    if reason:
        msg = f"{msg}: {reason}"
    if not a.resource_request:
        return Forbidden(f"forbidden: {msg}", details={})
    qualified = f"{a.resource}.{a.api_group}" if a.api_group else a.resource
    details: dict[str, str] = {"name": a.name} if a.name else {}
    if a.api_group:
        details["group"] = a.api_group
    details["kind"] = a.resource
    if a.name:
        return Forbidden(f'{qualified} "{a.name}" is forbidden: {msg}', details=details)
    return Forbidden(f"{qualified} is forbidden: {msg}", details=details)
