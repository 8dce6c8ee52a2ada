"""The apiserver's OpenAPI documents and server-side field validation, over real HTTP."""

from __future__ import annotations

import json

import httpx

from edgebus.openapi import gnostic

from .test_apiserver import api, assert_status, cm  # noqa: F401 - the fixture

CMS = "/api/v1/namespaces/default/configmaps"


async def test_openapi_documents(api: httpx.AsyncClient) -> None:  # noqa: F811
    pb = await api.get("/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert pb.status_code == 200 and pb.headers["content-type"] == gnostic.CONTENT_TYPE and pb.content[:5] == b"\x0a\x032.0"
    js = (await api.get("/openapi/v2")).json()
    assert js["swagger"] == "2.0" and "io.k8s.api.core.v1.Pod" in js["definitions"]
    root = (await api.get("/openapi/v3")).json()["paths"]
    url = root["apis/devices.kubeedge.io/v1beta1"]["serverRelativeURL"]
    doc = await api.get(url)
    assert doc.status_code == 200 and doc.headers["cache-control"] == "public, immutable"
    assert "io.kubeedge.devices.v1beta1.Device" in doc.json()["components"]["schemas"]
    assert_status(await api.get("/openapi/v3/apis/nope/v1"), 404, "NotFound")


async def test_field_validation(api: httpx.AsyncClient) -> None:  # noqa: F811
    body = cm("a", k="v")
    body["dataa"] = {"x": "y"}
    r = await api.post(CMS, params={"fieldValidation": "Strict"}, json=body)
    assert assert_status(r, 400, "BadRequest")["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "dataa"'
    )
    r = await api.post(CMS, content=b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "name": "a"}, "dataa": {}}')
    assert r.status_code == 201 and "dataa" not in r.json()
    assert r.headers.get_list("warning") == ['299 - "unknown field \\"dataa\\""', '299 - "duplicate field \\"metadata.name\\""']
    r = await api.put(f"{CMS}/a", params={"fieldValidation": "Ignore"}, json={**cm("a", k="w"), "extra": 1})
    assert r.status_code == 200 and "warning" not in r.headers and "extra" not in (await api.get(f"{CMS}/a")).json()
    merge = {"Content-Type": "application/merge-patch+json"}
    r = await api.patch(f"{CMS}/a", params={"fieldValidation": "Strict"}, headers=merge, content=json.dumps({"data": {"k": "x"}, "bogus": True}))
    assert_status(r, 400, "BadRequest")
    r = await api.patch(f"{CMS}/a", headers=merge, content=json.dumps({"data": {"k": "x"}}))
    assert r.status_code == 200 and r.json()["data"] == {"k": "x"} and "warning" not in r.headers
    assert "invalid fieldValidation" in assert_status(await api.post(CMS, params={"fieldValidation": "loose"}, json=cm("b")), 400, "BadRequest")["message"]
