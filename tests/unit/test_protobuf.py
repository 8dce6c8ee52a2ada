"""Kubernetes protobuf request bodies decoded to JSON objects, checked against bodies
encoded here from the protobuf wire format and the field numbers of Kubernetes'
``generated.proto`` (Deployment: metadata 1, spec 2; DeploymentSpec: replicas 1, selector 2,
template 3, strategy 4; ...)."""

from __future__ import annotations

import base64

import pytest

from edgebus.errors import BadRequest
from edgebus.openapi import protobuf


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(num: int, payload: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def vi(num: int, n: int) -> bytes:
    return varint(num << 3) + varint(n)


def s(num: int, text: str) -> bytes:
    return ld(num, text.encode())


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return protobuf.MAGIC + ld(1, s(1, api_version) + s(2, kind)) + ld(2, raw) + s(3, "") + s(4, "")


def entry(k: str, v: bytes) -> bytes:
    return s(1, k) + ld(2, v)


def test_deployment_as_kubectl_create_sends_it() -> None:
    labels = ld(11, s(1, "app") + s(2, "web"))  # ObjectMeta.labels (map)
    meta = s(1, "web") + s(2, "") + s(3, "") + vi(7, 0) + ld(8, b"") + labels  # name, generateName, namespace, generation, creationTimestamp (zero Time)
    container = s(1, "busybox") + s(2, "busybox:1") + ld(3, b"sleep") + ld(3, b"3600") + ld(8, b"")  # name, image, command x2, resources {}
    pod_spec = ld(2, container) + s(8, "")  # containers, restartPolicy "" (dropped)
    template = ld(1, ld(11, s(1, "app") + s(2, "web")) + ld(8, b"")) + ld(2, pod_spec)
    selector = ld(1, s(1, "app") + s(2, "web"))  # LabelSelector.matchLabels
    strategy = s(1, "RollingUpdate") + ld(2, ld(1, vi(1, 1) + s(3, "25%")) + ld(2, vi(1, 0) + vi(2, 2)))
    spec = vi(1, 0) + ld(2, selector) + ld(3, template) + ld(4, strategy) + vi(5, 0)  # replicas 0 (a pointer: kept), minReadySeconds 0 (dropped)
    body = envelope("apps/v1", "Deployment", ld(1, meta) + ld(2, spec) + ld(3, b""))
    obj = protobuf.decode(body)
    assert obj == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "busybox", "image": "busybox:1", "command": ["sleep", "3600"], "resources": {}}]}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 2}},
        },
        "status": {},
    }


def test_configmap_secret_time_quantity_inline() -> None:
    cm = envelope("v1", "ConfigMap", ld(1, s(1, "cfg")) + ld(2, entry("a", b"1")) + ld(3, entry("bin", b"\x00\x01")))
    assert protobuf.decode(cm) == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}, "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()}}
    ts = ld(8, vi(1, 1767225600))  # creationTimestamp 2026-01-01T00:00:00Z
    sec = envelope("v1", "Secret", ld(1, s(1, "x") + ts) + ld(2, entry("p", b"hunter2")) + s(3, "Opaque"))
    out = protobuf.decode(sec)
    assert out["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z" and out["data"] == {"p": base64.b64encode(b"hunter2").decode()} and out["type"] == "Opaque"
    # a Volume's VolumeSource is inlined; a ResourceList holds Quantities
    volume = s(1, "cache") + ld(2, ld(2, b""))  # volumeSource.emptyDir {}
    limits = ld(1, s(1, "cpu") + ld(2, s(1, "500m")))
    container = s(1, "c") + s(2, "i") + ld(8, limits)
    pod = envelope("v1", "Pod", ld(1, s(1, "p")) + ld(2, ld(1, volume) + ld(2, container)))
    spec = protobuf.decode(pod)["spec"]
    assert spec["volumes"] == [{"name": "cache", "emptyDir": {}}]
    assert spec["containers"][0]["resources"] == {"limits": {"cpu": "500m"}}


def test_malformed_bodies_are_bad_requests() -> None:
    with pytest.raises(BadRequest):
        protobuf.decode(b'{"kind": "Pod"}')
    with pytest.raises(BadRequest):
        protobuf.decode(protobuf.MAGIC + b"\xff\xff\xff")
    with pytest.raises(BadRequest):
        protobuf.decode(envelope("v1", "NoSuchKind", b""))
