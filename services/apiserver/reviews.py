"""Routes of the kinds that are created, answered and never stored.

* ``authorization.k8s.io/v1``: ``selfsubjectaccessreviews`` (``kubectl auth can-i``),
  ``selfsubjectrulesreviews`` (``kubectl auth can-i --list``), ``subjectaccessreviews`` and
  ``namespaces/{ns}/localsubjectaccessreviews`` (for another user: ``create`` on them is
  admin's);
* ``authentication.k8s.io/v1``: ``selfsubjectreviews`` (``kubectl auth whoami``);
* ``/api/v1/namespaces/{ns}/serviceaccounts/{name}/token``: a TokenRequest
  (``kubectl create token``), signed with the apiserver's signing key.

The requester is in the request scope (put there by :class:`edgebus.auth.guard.Guard`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgebus.auth import Attributes, UserInfo
from edgebus.auth.guard import USER_KEY
from edgebus.auth.tokens import DEFAULT_SA_SECONDS, MIN_SA_SECONDS
from edgebus.auth.user import ANONYMOUS_USER
from edgebus.errors import BadRequest, Conflict, Invalid, NotFound, Unavailable
from edgebus.objects import PODS, SERVICEACCOUNTS, now
from edgebus.objectstore import ObjectStore
from services.apiserver import fields, logic
from services.apiserver.security import Security
from edgebus.objects.shapes import as_dict
from edgebus.kubehttp import Routes

AUTHZ = "/apis/authorization.k8s.io/v1"
AUTHN = "/apis/authentication.k8s.io/v1"


def _user(request: Request) -> UserInfo:
    return request.scope.get(USER_KEY) or ANONYMOUS_USER


def _attributes(spec: dict[str, Any]) -> Attributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if isinstance(ra, dict):
        verb = str(ra.get("verb") or "")
        if not verb:
            raise Invalid("spec.resourceAttributes.verb: Required value")
        return Attributes(
            verb=verb,
            resource_request=True,
            api_group=str(ra.get("group") or ""),
            api_version=str(ra.get("version") or ""),
            resource=str(ra.get("resource") or ""),
            subresource=str(ra.get("subresource") or ""),
            namespace=str(ra.get("namespace") or ""),
            name=str(ra.get("name") or ""),
        )
    if isinstance(nra, dict):
        return Attributes(verb=str(nra.get("verb") or ""), resource_request=False, path=str(nra.get("path") or ""))
    raise Invalid("spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified")


def _review_body(body: dict[str, Any], kind: str, group: str, status: dict[str, Any]) -> dict[str, Any]:
    md = as_dict(body.get("metadata"))
    return {"kind": kind, "apiVersion": f"{group}/v1", "metadata": {**md, "creationTimestamp": None}, "spec": body.get("spec") or {}, "status": status}


def _parse(raw: bytes) -> dict[str, Any]:
    body = logic.parse_object(raw)
    if not isinstance(body.get("spec", {}), dict):
        raise BadRequest("spec must be an object")
    return body


def add_routes(routes: Routes, store: ObjectStore, security: Security, *, max_token_seconds: int) -> None:
    async def access(user: UserInfo, body: dict[str, Any], kind: str) -> Response:
        a = _attributes(body.get("spec") or {})
        d = await security.authorize(user, a)
        status: dict[str, Any] = {"allowed": d.allowed}
        if d.reason:
            status["reason"] = d.reason
        if not d.allowed and d.decided:
            status["denied"] = True
        return JSONResponse(_review_body(body, kind, "authorization.k8s.io", status), status_code=201)

    @routes.post(f"{AUTHZ}/selfsubjectaccessreviews")
    async def self_access(request: Request) -> Response:
        return await access(_user(request), _parse(await fields.read_body(request)), "SelfSubjectAccessReview")

    def subject(spec: dict[str, Any]) -> UserInfo:
        name = spec.get("user")
        groups = spec.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise Invalid("spec.groups: must be a list of strings")
        if not name and not groups:
            raise Invalid("spec.user: Invalid value: \"\": at least one of user or group must be specified")
        extra = {str(k): tuple(v) for k, v in (spec.get("extra") or {}).items() if isinstance(v, list)}
        return UserInfo(str(name or ""), uid=str(spec.get("uid") or ""), groups=tuple(groups), extra=extra)

    @routes.post(f"{AUTHZ}/subjectaccessreviews")
    async def subject_access(request: Request) -> Response:
        body = _parse(await fields.read_body(request))
        return await access(subject(body.get("spec") or {}), body, "SubjectAccessReview")

    @routes.post(f"{AUTHZ}/namespaces/{{namespace}}/localsubjectaccessreviews")
    async def local_access(request: Request) -> Response:
        namespace = request.path_params["namespace"]
        body = _parse(await fields.read_body(request))
        spec = body.get("spec") or {}
        ra = spec.get("resourceAttributes")
        if not isinstance(ra, dict) or (ra.get("namespace") or namespace) != namespace:
            raise BadRequest(f"spec.resourceAttributes.namespace must be {namespace!r}")
        ra["namespace"] = namespace
        body["metadata"] = {**(body.get("metadata") or {}), "namespace": namespace}
        return await access(subject(spec), body, "LocalSubjectAccessReview")

    @routes.post(f"{AUTHZ}/selfsubjectrulesreviews")
    async def self_rules(request: Request) -> Response:
        body = _parse(await fields.read_body(request))
        ns = str((body.get("spec") or {}).get("namespace") or "")
        user = _user(request)
        rules, incomplete = security.authorizer.rbac.rules_for(user, ns)
        status: dict[str, Any] = {
            "resourceRules": [r.body() for r in rules if not r.non_resource_urls],
            "nonResourceRules": [r.body() for r in rules if r.non_resource_urls],
            "incomplete": incomplete,
        }
        if security.authorizer.always_allow:
            status["resourceRules"] = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
            status["nonResourceRules"] = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
        elif security.authorizer.graph is not None and user.name.startswith("system:node:"):
            status["incomplete"] = True
            status["evaluationError"] = "node authorizer does not support user rule resolution"
        elif incomplete:
            status["evaluationError"] = "a binding names a role that does not exist"
        return JSONResponse(_review_body(body, "SelfSubjectRulesReview", "authorization.k8s.io", status), status_code=201)

    @routes.post(f"{AUTHN}/selfsubjectreviews")
    async def whoami(request: Request) -> Response:
        logic.parse_object(await fields.read_body(request))
        out = {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": None}, "status": {"userInfo": _user(request).body()}}
        return JSONResponse(out, status_code=201)

    @routes.post("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token")
    async def token(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        body = logic.parse_object(await fields.read_body(request))
        spec = as_dict(body.get("spec"))
        if security.issuer is None:
            raise Unavailable("this apiserver issues no tokens: it has no signing key (EDGEBUS_APISERVER__SIGNING_KEY)")
        sa = await store.get(SERVICEACCOUNTS, namespace, name)
        seconds = spec.get("expirationSeconds")
        seconds = DEFAULT_SA_SECONDS if seconds is None else seconds
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise Invalid("spec.expirationSeconds: must be an integer")
        if seconds < MIN_SA_SECONDS:
            raise Invalid(f"spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than 10 minutes")
        seconds = min(seconds, max_token_seconds)
        audiences = spec.get("audiences") or list(security.issuer.audiences)
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise Invalid("spec.audiences: must be a list of strings")
        pod = None
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict) and ref:
            if ref.get("kind") != "Pod":
                raise Invalid(f'spec.boundObjectRef.kind: Unsupported value: "{ref.get("kind")}": supported values: "Pod"')
            try:
                p = await store.get(PODS, namespace, str(ref.get("name") or ""))
            except NotFound:
                raise NotFound(f'pods "{ref.get("name")}" not found', details={"name": str(ref.get("name")), "kind": "pods"}) from None
            uid = (p.get("metadata") or {}).get("uid")
            if ref.get("uid") and ref["uid"] != uid:
                raise Conflict(f'the UID in the bound object reference ({ref["uid"]}) does not match the UID in record ({uid})')
            pod = (str(ref.get("name")), str(uid))
        tok, exp = security.issuer.service_account_token(namespace, name, str(sa["metadata"].get("uid") or ""), seconds=seconds, audiences=audiences, pod=pod)
        out = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now()},
            "spec": {**spec, "audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": spec.get("boundObjectRef")},
            "status": {"token": tok, "expirationTimestamp": dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        }
        return JSONResponse(out, status_code=201)
