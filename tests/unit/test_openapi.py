"""The OpenAPI documents and server-side field validation (pure)."""

from __future__ import annotations

import copy
import importlib.util
import json
from typing import Any

import pytest

from edgebus import openapi
from edgebus.errors import BadRequest
from edgebus.objects import RESOURCES, resolve
from edgebus.openapi import build, fields, spec

PODS = resolve("pods")
DEVICES = resolve("devices")


def test_vendored_definitions_are_what_the_package_gives() -> None:
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.skip("kubernetes-validate (a test dependency) is not installed")
    assert build.main(["--check"]) == 0, "run: python -m edgebus.openapi.build"


def test_every_served_resource_has_a_schema_and_paths() -> None:
    paths = openapi.v2_document()["paths"]
    for r in RESOURCES.values():
        assert openapi.resource_definition(r), f"{r.plural}: no schema (add it to edgebus/openapi)"
        base = f"/apis/{r.group}/{r.version}" if r.group else "/api/v1"
        coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
        assert {"get", "post"} <= set(paths[coll]) and {"get", "put", "patch", "delete"} <= set(paths[coll + "/{name}"])
        patch = paths[coll + "/{name}"]["patch"]
        assert patch["x-kubernetes-group-version-kind"] == {"group": r.group, "version": r.version, "kind": r.kind}
        assert "fieldValidation" in [p["name"] for p in patch["parameters"]]


def _refs(x: Any) -> set[str]:
    if isinstance(x, dict):
        return ({x["$ref"]} if "$ref" in x else set()).union(*(_refs(v) for v in x.values()))
    if isinstance(x, list):
        return set().union(*(_refs(v) for v in x))
    return set()


def test_every_reference_resolves() -> None:
    v2 = openapi.v2_document()
    assert {r.rsplit("/", 1)[1] for r in _refs(v2)} <= set(v2["definitions"])
    root = openapi.v3_root()["paths"]
    assert set(root) >= {"api/v1", "apis/devices.kubeedge.io/v1beta1"}
    for gv, entry in root.items():
        assert entry["serverRelativeURL"] == f"/openapi/v3/{gv}?hash={openapi.v3_hash(gv)}"
        doc = json.loads(openapi.v3_document(gv) or b"{}")
        schemas = doc["components"]["schemas"]
        assert all(r.startswith("#/components/schemas/") for r in _refs(doc))
        assert {r.rsplit("/", 1)[1] for r in _refs(doc)} <= set(schemas), gv


def test_v3_patch_operations_advertise_field_validation_and_patch_types() -> None:
    core = json.loads(openapi.v3_document("api/v1") or b"")
    patch = core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert [p["name"] for p in patch["parameters"]] == ["fieldValidation"]
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    devs = json.loads(openapi.v3_document("apis/devices.kubeedge.io/v1beta1") or b"")
    dpatch = devs["paths"]["/apis/devices.kubeedge.io/v1beta1/namespaces/{namespace}/devices/{name}"]["patch"]
    # like a CRD: no strategic merge, so kubectl apply sends JSON merge patches
    assert set(dpatch["requestBody"]["content"]) == {"application/json-patch+json", "application/merge-patch+json"}
    # a reference with a description is wrapped in allOf, as the Kubernetes API server does
    md = core["components"]["schemas"]["io.k8s.api.core.v1.Pod"]["properties"]["metadata"]
    assert md["allOf"] == [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}] and md["description"]


# -- gnostic protobuf ---------------------------------------------------------------------


def _decode(buf: bytes) -> dict[int, list[Any]]:
    """A schema-less protobuf decoder: field number -> values (bytes for length-delimited)."""
    out: dict[int, list[Any]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n

    while i < len(buf):
        key = varint()
        field, wt = key >> 3, key & 7
        if wt == 0:
            out.setdefault(field, []).append(varint())
        elif wt == 2:
            n = varint()
            out.setdefault(field, []).append(buf[i : i + n])
            i += n
        elif wt == 1:
            out.setdefault(field, []).append(buf[i : i + 8])
            i += 8
        else:
            raise AssertionError(f"unexpected wire type {wt}")
    return out


def test_v2_protobuf_is_a_gnostic_document() -> None:
    doc = _decode(openapi.v2_protobuf())
    assert doc[1] == [b"2.0"]
    paths = {_decode(p)[1][0].decode(): _decode(_decode(p)[2][0]) for p in _decode(doc[8][0])[2]}
    item = paths["/api/v1/namespaces/{namespace}/pods/{name}"]
    patch = _decode(item[8][0])  # PathItem.patch
    assert patch[5] == [b"patchCoreV1NamespacedPod"]
    exts = {_decode(e)[1][0].decode(): json.loads(_decode(_decode(e)[2][0])[2][0]) for e in patch[13]}
    assert exts["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Pod", "version": "v1"}
    query = [_decode(_decode(_decode(_decode(p)[1][0])[2][0])[3][0]) for p in patch[8] if 2 in _decode(_decode(p)[1][0])]
    assert [q[4][0] for q in query] == [b"fieldValidation"] and query[0][2] == [b"query"]
    defs = {_decode(d)[1][0].decode(): _decode(_decode(d)[2][0]) for d in _decode(doc[9][0])[1]}
    pod = defs["io.k8s.api.core.v1.Pod"]
    assert _decode(pod[22][0])[1] == [b"object"]  # TypeItem
    props = {_decode(p)[1][0].decode(): _decode(_decode(p)[2][0]) for p in _decode(pod[25][0])[1]}
    assert props["metadata"][1] == [b"#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]


# -- field validation ------------------------------------------------------------------------


def pod(**container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"any-key": "v"}, "annotations": {"x/y": "z"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "1"}}, **container}]},
    }


def test_unknown_fields_have_kubernetes_paths() -> None:
    defs = openapi.definitions()
    assert fields.unknown_fields(defs, "io.k8s.api.core.v1.Pod", pod()).paths == []
    bad = pod(imagee="x", env=[{"name": "A", "vaule": "1"}])
    bad["spex"] = {}
    assert fields.unknown_fields(defs, "io.k8s.api.core.v1.Pod", bad).paths == ["spec.containers[0].imagee", "spec.containers[0].env[0].vaule", "spex"]


def test_strict_rejects_warn_prunes_ignore_is_silent() -> None:
    with pytest.raises(BadRequest) as exc:
        openapi.check_fields(PODS, pod(imagee="x"), "Strict")
    assert exc.value.message == 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagee"'
    obj = pod(imagee="x")
    assert openapi.check_fields(PODS, obj, "Warn", duplicates=["metadata.name"]) == ['unknown field "spec.containers[0].imagee"', 'duplicate field "metadata.name"']
    assert obj == pod()
    obj = pod(imagee="x")
    assert openapi.check_fields(PODS, obj, "Ignore") == [] and obj == pod()


def test_a_patch_is_judged_on_what_it_adds() -> None:
    stored = pod(legacy="kept")
    new = copy.deepcopy(stored)
    new["metadata"]["labels"]["more"] = "yes"
    assert openapi.check_fields(PODS, new, "Strict", current=stored) == []
    assert new["spec"]["containers"][0]["legacy"] == "kept"
    new["spec"]["nodeNam"] = "typo"
    with pytest.raises(BadRequest, match='unknown field "spec.nodeNam"'):
        openapi.check_fields(PODS, new, "Strict", current=stored)


def test_device_config_data_is_free_form() -> None:
    dev = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "d"},
        "spec": {
            "deviceModelRef": {"name": "m"},
            "protocol": {"protocolName": "modbus", "configData": {"ip": "1.2.3.4", "anything": {"nested": 1}}},
            "properties": [{"name": "t", "desired": {"value": "1"}, "visitors": {"protocolName": "modbus", "configData": {"register": "CoilRegister"}}}],
            "rules": [{"name": "r", "when": "t > 1", "set": {"t": "0"}}],
        },
        "status": {"twins": [{"propertyName": "t", "reported": {"value": "1", "metadata": {"timestamp": "1"}}}], "somethingNew": 1},
    }
    assert fields.unknown_fields(openapi.definitions(), spec.resource_definition(DEVICES) or "", dev).paths == []
    dev["spec"]["properties"][0]["visitor"] = {}
    assert fields.unknown_fields(openapi.definitions(), spec.resource_definition(DEVICES) or "", dev).paths == ["spec.properties[0].visitor"]


def test_duplicate_keys_are_found_with_their_path() -> None:
    obj, dups = fields.loads_with_duplicates(b'{"metadata": {"name": "a", "name": "b"}, "spec": {"containers": [{"image": "x", "image": "y"}]}}')
    assert obj["metadata"]["name"] == "b" and obj["spec"]["containers"][0]["image"] == "y"
    assert dups == ["metadata.name", "spec.containers[0].image"]
    assert fields.loads_with_duplicates(b'{"a": 1}') == ({"a": 1}, [])
    with pytest.raises(ValueError):
        fields.loads_with_duplicates(b'{"a": NaN}')


@pytest.mark.parametrize(("value", "mode"), [(None, "Warn"), ("", "Warn"), ("Strict", "Strict"), ("Ignore", "Ignore")])
def test_directive(value: str | None, mode: str) -> None:
    assert fields.directive(value) == mode


def test_bad_directive() -> None:
    with pytest.raises(BadRequest, match="invalid fieldValidation"):
        fields.directive("strict")


def test_warning_header_quotes() -> None:
    assert fields.warning_header('unknown field "a"') == '299 - "unknown field \\"a\\""'
