"""Kubernetes protobuf request bodies, as kubectl 1.33 sends them (captured), decoded to JSON."""

from __future__ import annotations

import pytest

from edgebus.openapi.protobuf import ProtobufError, decode

# kubectl.1.33 auth can-i get pods / create token default / auth whoami, captured from the wire
SSAR = (
    b'k8s\x00\n2\n\x17authorization.k8s.io/v1\x12\x17SelfSubjectAccessReview\x12<\n\x10\n\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x1e\n\x1c'
    b'\n\x07default\x12\x03get\x1a\x00"\x00*\x04pods2\x00:\x00\x1a\x08\x08\x00\x12\x00\x1a\x00 \x00\x1a\x00"\x00'
)
TOKEN = b'k8s\x00\n(\n\x18authentication.k8s.io/v1\x12\x0cTokenRequest\x12\x1a\n\x10\n\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x00\x1a\x04\n\x00\x12\x00\x1a\x00"\x00'
WHOAMI = b'k8s\x00\n-\n\x18authentication.k8s.io/v1\x12\x11SelfSubjectReview\x12\x1a\n\x10\n\x00\x12\x00\x1a\x00"\x00*\x002\x008\x00B\x00\x12\x06\n\x04\n\x00\x12\x00\x1a\x00"\x00'


def _field(num: int, payload: bytes) -> bytes:
    return bytes([num << 3 | 2, len(payload)]) + payload


def _set(obj: dict) -> dict:
    """The object without what a server ignores in a request: the empty structs Go's encoder
    writes (``metadata: {}``) and ``status``."""
    return {k: v for k, v in obj.items() if (v != {} or k == "spec") and k != "status"}


def test_captured_kubectl_bodies() -> None:
    assert _set(decode(SSAR)) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "get", "resource": "pods"}},
    }
    assert _set(decode(TOKEN)) == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    assert _set(decode(WHOAMI)) == {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


def test_a_role_with_labels() -> None:
    rule = _field(1, b"get") + _field(1, b"list") + _field(2, b"") + _field(3, b"pods")
    meta = _field(1, b"r1") + _field(3, b"team") + _field(11, _field(1, b"app") + _field(2, b"web"))
    raw = _field(1, meta) + _field(2, rule)
    body = b"k8s\x00" + _field(1, _field(1, b"rbac.authorization.k8s.io/v1") + _field(2, b"Role")) + _field(2, raw)
    assert decode(body) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "r1", "namespace": "team", "labels": {"app": "web"}},
        "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}],
    }


@pytest.mark.parametrize("bad", [b"{}", b"k8s\x00\x0a\x05ab", SSAR.replace(b"SelfSubjectAccessReview", b"SelfSubjectAccessReviex")])
def test_refused(bad: bytes) -> None:
    with pytest.raises(ProtobufError):
        decode(bad)
