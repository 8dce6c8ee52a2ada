"""Kubernetes' protobuf request bodies (``application/vnd.kubernetes.protobuf``) turned into
the JSON objects the servers handle.

kubectl's typed clients (``auth can-i``, ``auth whoami``, ``create token``, ``create role``,
``create rolebinding``, ``create serviceaccount``, ... from kubectl 1.31 on) send protobuf:
the magic ``k8s\\0`` and a ``runtime.Unknown`` (type meta, raw object). This decodes the raw
object of the kinds listed in :data:`MESSAGES` (field numbers from Kubernetes'
``generated.proto``); responses are answered in JSON, which those clients accept too.
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"


class ProtobufError(ValueError):
    pass


# A message schema: field number -> (json name, type, repeated). Types: "string", "bytes",
# "int", "bool", "map" (map<string,string>), "extra" (map<string, {items: [string]}>),
# "time" (meta.v1.Time -> RFC 3339), or the name of another message in MESSAGES.
Schema = dict[int, tuple[str, str, bool]]

MESSAGES: dict[str, Schema] = {
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False), 3: ("contentEncoding", "string", False), 4: ("contentType", "string", False)},
    "ObjectMeta": {
        1: ("name", "string", False),
        2: ("generateName", "string", False),
        3: ("namespace", "string", False),
        5: ("uid", "string", False),
        6: ("resourceVersion", "string", False),
        7: ("generation", "int", False),
        11: ("labels", "map", False),
        12: ("annotations", "map", False),
        13: ("ownerReferences", "OwnerReference", True),
        14: ("finalizers", "string", True),
    },
    "OwnerReference": {1: ("kind", "string", False), 3: ("name", "string", False), 4: ("uid", "string", False), 5: ("apiVersion", "string", False), 6: ("controller", "bool", False), 7: ("blockOwnerDeletion", "bool", False)},
    "ObjectReference": {1: ("kind", "string", False), 2: ("namespace", "string", False), 3: ("name", "string", False), 4: ("uid", "string", False), 5: ("apiVersion", "string", False), 6: ("resourceVersion", "string", False), 7: ("fieldPath", "string", False)},
    "LocalObjectReference": {1: ("name", "string", False)},
    # authorization.k8s.io/v1
    "ResourceAttributes": {1: ("namespace", "string", False), 2: ("verb", "string", False), 3: ("group", "string", False), 4: ("version", "string", False), 5: ("resource", "string", False), 6: ("subresource", "string", False), 7: ("name", "string", False)},
    "NonResourceAttributes": {1: ("path", "string", False), 2: ("verb", "string", False)},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", False), 2: ("nonResourceAttributes", "NonResourceAttributes", False)},
    "SubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", False),
        2: ("nonResourceAttributes", "NonResourceAttributes", False),
        3: ("user", "string", False),
        4: ("groups", "string", True),
        5: ("extra", "extra", False),
        6: ("uid", "string", False),
    },
    "SelfSubjectRulesReviewSpec": {1: ("namespace", "string", False)},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SelfSubjectAccessReviewSpec", False)},
    "SubjectAccessReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SubjectAccessReviewSpec", False)},
    "LocalSubjectAccessReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SubjectAccessReviewSpec", False)},
    "SelfSubjectRulesReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SelfSubjectRulesReviewSpec", False)},
    # authentication.k8s.io/v1
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta", False)},
    "BoundObjectReference": {1: ("kind", "string", False), 2: ("apiVersion", "string", False), 3: ("name", "string", False), 4: ("uid", "string", False)},
    "TokenRequestSpec": {1: ("audiences", "string", True), 4: ("expirationSeconds", "int", False), 3: ("boundObjectRef", "BoundObjectReference", False)},
    "TokenRequest": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "TokenRequestSpec", False)},
    # rbac.authorization.k8s.io/v1
    "PolicyRule": {1: ("verbs", "string", True), 2: ("apiGroups", "string", True), 3: ("resources", "string", True), 4: ("resourceNames", "string", True), 5: ("nonResourceURLs", "string", True)},
    "Role": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "ClusterRole": {1: ("metadata", "ObjectMeta", False), 2: ("rules", "PolicyRule", True)},
    "Subject": {1: ("kind", "string", False), 2: ("apiGroup", "string", False), 3: ("name", "string", False), 4: ("namespace", "string", False)},
    "RoleRef": {1: ("apiGroup", "string", False), 2: ("kind", "string", False), 3: ("name", "string", False)},
    "RoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True), 3: ("roleRef", "RoleRef", False)},
    "ClusterRoleBinding": {1: ("metadata", "ObjectMeta", False), 2: ("subjects", "Subject", True), 3: ("roleRef", "RoleRef", False)},
    # core/v1
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False), 2: ("secrets", "ObjectReference", True), 3: ("imagePullSecrets", "LocalObjectReference", True), 4: ("automountServiceAccountToken", "bool", False)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map", False), 3: ("binaryData", "bytesmap", False), 4: ("immutable", "bool", False)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", "bytesmap", False), 3: ("type", "string", False), 4: ("stringData", "map", False), 5: ("immutable", "bool", False)},
    "Namespace": {1: ("metadata", "ObjectMeta", False)},
}

#: kinds a request body may carry (the top-level messages above)
KINDS = frozenset(
    {"SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview", "SelfSubjectRulesReview", "SelfSubjectReview", "TokenRequest",
     "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ServiceAccount", "ConfigMap", "Secret", "Namespace"}
)  # fmt: skip


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtobufError("truncated field")
            v, i = buf[i : i + n], i + n
        elif wt == 1:
            v, i = buf[i : i + 8], i + 8
        elif wt == 5:
            v, i = buf[i : i + 4], i + 4
        else:
            raise ProtobufError(f"unsupported wire type {wt}")
        out.append((num, wt, v))
    return out


def _str(v: Any) -> str:
    if not isinstance(v, bytes):
        raise ProtobufError("expected a string")
    return v.decode()


def _map(v: bytes, *, raw_values: bool = False, extra: bool = False) -> tuple[str, Any]:
    key: str = ""
    val: Any = b"" if raw_values else ""
    for num, _wt, x in _fields(v):
        if num == 1:
            key = _str(x)
        elif num == 2:
            if extra:
                val = [_str(y) for n, _w, y in _fields(x) if n == 1]
            else:
                val = x if raw_values else _str(x)
    return key, val


def decode_message(buf: bytes, schema_name: str) -> dict[str, Any]:
    schema = MESSAGES[schema_name]
    out: dict[str, Any] = {}
    for num, _wt, v in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue  # a field edgebus does not read
        name, typ, repeated = spec
        if typ == "string":
            val: Any = _str(v)
            if not val and not repeated:
                continue  # gogo writes empty strings; JSON omits them
        elif typ == "bytes":
            val = v
        elif typ == "int":
            val = v if isinstance(v, int) else 0
            if val >= 1 << 63:
                val -= 1 << 64
            if schema_name == "ObjectMeta" and not val:
                continue
        elif typ == "bool":
            val = bool(v)
        elif typ in ("map", "bytesmap", "extra"):
            k, mv = _map(v, raw_values=typ == "bytesmap", extra=typ == "extra")
            if typ == "bytesmap":
                mv = base64.b64encode(mv).decode()
            out.setdefault(name, {})[k] = mv
            continue
        else:
            val = decode_message(v, typ)
        if repeated:
            out.setdefault(name, []).append(val)
        else:
            out[name] = val
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf-encoded Kubernetes object as its JSON object (apiVersion and kind set)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf body (no k8s magic)")
    unknown = decode_message(body[len(MAGIC) :], "Unknown")
    tm = unknown.get("typeMeta") or {}
    kind = tm.get("kind", "")
    if kind not in KINDS:
        raise ProtobufError(f"protobuf bodies of kind {kind!r} are not supported: send JSON")
    obj = decode_message(unknown.get("raw") or b"", kind)
    md = obj.get("metadata")
    if isinstance(md, dict) and not md:
        obj.pop("metadata")
    return {"apiVersion": tm.get("apiVersion", ""), "kind": kind, **obj}
