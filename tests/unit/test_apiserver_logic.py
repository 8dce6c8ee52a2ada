"""Pure helpers of the apiserver: patches, request checks, list / watch / table bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edgebus.errors import BadRequest, Invalid, NotFound
from edgebus.objects import CONFIGMAPS, NAMESPACES, NODES, PODS
from services.apiserver import logic

# -- RFC 7386 merge patch (examples from the RFC's appendix A) ---------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target: object, patch: object, result: object) -> None:
    before = json.dumps(target)
    assert logic.merge_patch(target, patch) == result
    assert json.dumps(target) == before  # the target is not modified


def test_merge_patch_result_shares_nothing_with_inputs() -> None:
    target = {"a": {"b": [1]}}
    patch = {"c": {"d": [2]}}
    out = logic.merge_patch(target, patch)
    out["a"]["b"].append(9)
    out["c"]["d"].append(9)
    assert target == {"a": {"b": [1]}} and patch == {"c": {"d": [2]}}


# -- RFC 6902 JSON patch ------------------------------------------------------------------


def test_json_patch_ops() -> None:
    doc = {"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v"}, "list": [1, 2]}
    ops = [
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "replace", "path": "/data/k", "value": "w"},
        {"op": "add", "path": "/list/-", "value": 3},
        {"op": "copy", "from": "/data/k", "path": "/data/k2"},
        {"op": "move", "from": "/data/k2", "path": "/data/k3"},
        {"op": "add", "path": "/metadata/labels/x~1y", "value": "slash"},
    ]
    out = logic.json_patch(doc, ops)
    assert out == {
        "metadata": {"name": "x", "labels": {"b": "2", "x/y": "slash"}},
        "data": {"k": "w", "k3": "w"},
        "list": [1, 2, 3],
    }
    assert doc["data"] == {"k": "v"}  # not modified


@pytest.mark.parametrize(
    "ops",
    [
        {"op": "add"},
        [{"op": "frobnicate", "path": "/a"}],
        [{"path": "/a", "value": 1}],
        [{"op": "add", "path": "/a"}],
        [{"op": "move", "path": "/a"}],
        ["not an op"],
    ],
)
def test_json_patch_malformed_is_bad_request(ops: object) -> None:
    with pytest.raises(BadRequest):
        logic.json_patch({"a": 1}, ops)


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "replace", "path": "/b/c", "value": 1}],
        [{"op": "add", "path": "/list/9", "value": 1}],
        [{"op": "add", "path": "no-slash", "value": 1}],
    ],
)
def test_json_patch_that_cannot_apply_is_invalid(ops: object) -> None:
    with pytest.raises(Invalid):
        logic.json_patch({"a": 1, "list": []}, ops)


# -- strategic merge patch -----------------------------------------------------------------


def _pod() -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x", "y"]},
        "spec": {
            "containers": [
                {"name": "a", "image": "img:1", "env": [{"name": "E1", "value": "1"}], "command": ["sleep"]},
                {"name": "b", "image": "img:1"},
            ],
            "tolerations": [{"key": "k"}],
        },
    }


def test_strategic_merge_lists_merge_by_key() -> None:
    out = logic.strategic_merge_patch(
        _pod(),
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "a", "image": "img:2", "env": [{"name": "E2", "value": "2"}]}],
            }
        },
    )
    assert out["spec"]["containers"] == [
        {"name": "b", "image": "img:1"},
        {"name": "a", "image": "img:2", "env": [{"name": "E1", "value": "1"}, {"name": "E2", "value": "2"}], "command": ["sleep"]},
    ]
    assert out["spec"]["tolerations"] == [{"key": "k"}]


def test_strategic_merge_directives() -> None:
    out = logic.strategic_merge_patch(
        _pod(),
        {
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "labels": {"$patch": "replace", "b": "2"}},
            "spec": {"containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "new"}], "tolerations": [{"key": "z"}]},
        },
    )
    assert out["metadata"] == {"name": "p", "labels": {"b": "2"}, "finalizers": ["y"]}
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "c"]
    assert out["spec"]["tolerations"] == [{"key": "z"}]  # no merge key: replaced
    assert "$patch" not in json.dumps(out)


def test_strategic_merge_plain_merge_semantics() -> None:
    assert logic.strategic_merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"c": None, "d": 3}}) == {"a": {"b": 1, "d": 3}}


def test_apply_patch_by_content_type() -> None:
    cur = {"metadata": {"name": "x"}, "data": {"a": "1"}}
    assert logic.apply_patch("application/merge-patch+json", cur, b'{"data": {"b": "2"}}')["data"] == {"a": "1", "b": "2"}
    assert logic.apply_patch("application/strategic-merge-patch+json; charset=utf-8", cur, b'{"data": {"a": null}}')["data"] == {}
    assert logic.apply_patch("application/json-patch+json", cur, b'[{"op": "remove", "path": "/data"}]') == {"metadata": {"name": "x"}}
    with pytest.raises(logic.UnsupportedMediaType) as ei:
        logic.apply_patch("application/json", cur, b"{}")
    assert ei.value.status()["code"] == 415
    with pytest.raises(BadRequest):
        logic.apply_patch("application/merge-patch+json", cur, b"[1]")
    with pytest.raises(BadRequest):
        logic.apply_patch("application/merge-patch+json", cur, b"{oops")
    with pytest.raises(Invalid):
        logic.apply_patch("application/json-patch+json", cur, b'[{"op": "replace", "path": "", "value": 1}]')


# -- request checks ---------------------------------------------------------------------


def test_parse_json_and_object() -> None:
    assert logic.parse_object(b'{"a": 1}') == {"a": 1}
    for bad in (b"", b"  ", b"{", b"\xff\xfe", b'{"a": NaN}', b'{"a": Infinity}'):
        with pytest.raises(BadRequest):
            logic.parse_json(bad)
    with pytest.raises(BadRequest) as ei:
        logic.parse_object(b"[1]")
    assert "an array" in ei.value.message


def test_resource_for() -> None:
    assert logic.resource_for("pods", namespaced_path=True) is PODS
    assert logic.resource_for("nodes", namespaced_path=False) is NODES
    assert logic.resource_for("pods", namespaced_path=False) is PODS  # list across namespaces
    with pytest.raises(NotFound):
        logic.resource_for("nodes", namespaced_path=True)
    with pytest.raises(NotFound):
        logic.resource_for("pod", namespaced_path=True)  # plurals only in URLs


def test_check_create_and_update() -> None:
    logic.check_create(CONFIGMAPS, {"metadata": {"name": "a"}}, "default")
    logic.check_create(CONFIGMAPS, {"metadata": {"name": "a", "namespace": "default"}}, "default")
    logic.check_create(NAMESPACES, {"metadata": {"name": "a", "namespace": "x"}}, None)
    with pytest.raises(BadRequest) as ei:
        logic.check_create(CONFIGMAPS, {"metadata": {"name": "a", "namespace": "other"}}, "default")
    assert "does not match the namespace sent on the request" in ei.value.message
    obj: dict[str, Any] = {"metadata": {}}
    logic.check_update(CONFIGMAPS, obj, "default", "a")
    assert obj["metadata"]["name"] == "a"  # filled in from the URL
    with pytest.raises(BadRequest) as ei:
        logic.check_update(CONFIGMAPS, {"metadata": {"name": "b"}}, "default", "a")
    assert "(b) does not match the name on the URL (a)" in ei.value.message
    with pytest.raises(NotFound):
        logic.check_path_name(PODS, "Not_Valid")
    with pytest.raises(NotFound):
        logic.check_path_namespace("UPPER")


def test_watch_params() -> None:
    p = logic.watch_params({"resourceVersion": "0", "timeoutSeconds": "5", "labelSelector": "a=b"})
    assert p == logic.WatchParams(None, "a=b", None, 5.0)
    assert logic.watch_params({"resourceVersion": "42"}).from_revision == 42
    assert logic.watch_params({}).from_revision is None and logic.watch_params({}).timeout is None
    assert logic.watch_params({"timeoutSeconds": "0"}).timeout is None
    for bad in ({"resourceVersion": "x"}, {"resourceVersion": "-1"}, {"timeoutSeconds": "1.5"}, {"timeoutSeconds": "-3"},
                {"labelSelector": "a in (b"}, {"fieldSelector": "!!"}):
        with pytest.raises(BadRequest):
            logic.watch_params(bad)
    assert logic.parse_bool("true") and logic.parse_bool("1") and not logic.parse_bool("false") and not logic.parse_bool(None)


# -- bodies ------------------------------------------------------------------------------


def test_list_body_and_watch_line() -> None:
    items = [{"metadata": {"name": "p"}}]
    body = logic.list_body(PODS, items, 17)
    assert body == {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "17"}, "items": items}
    line = logic.watch_line("ADDED", {"metadata": {"name": "p"}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"type": "ADDED", "object": {"metadata": {"name": "p"}}}


def test_table_and_discovery() -> None:
    t = logic.table_body(PODS, [{"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}], 3)
    assert t["kind"] == "Table" and t["metadata"]["resourceVersion"] == "3"
    names = [c["name"] for c in t["columnDefinitions"]]
    assert names[0] == "Name" and "Status" in names
    row = t["rows"][0]
    assert row["cells"][0] == "p" and row["object"]["metadata"]["name"] == "p"
    assert len(row["cells"]) == len(t["columnDefinitions"])
    res = logic.api_resource_list()
    pods = next(r for r in res["resources"] if r["name"] == "pods")
    assert pods["namespaced"] and pods["kind"] == "Pod" and "watch" in pods["verbs"] and "po" in pods["shortNames"]
    assert next(r for r in res["resources"] if r["name"] == "nodes")["namespaced"] is False
    assert logic.version_info()["gitVersion"] == "v1.30.0-edgebus"
