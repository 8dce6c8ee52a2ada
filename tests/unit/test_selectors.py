"""edgebus.objects.selectors: label and field selectors with Kubernetes syntax."""

from __future__ import annotations

from typing import Any

import pytest

from edgebus.errors import BadRequest
from edgebus.objects.selectors import (
    Requirement,
    field_equals,
    field_predicate,
    field_value,
    label_predicate,
    parse_field_selector,
    parse_label_selector,
)


def labelled(**labels: str) -> dict[str, Any]:
    return {"metadata": {"name": "x", "labels": {k.replace("_", "/"): v for k, v in labels.items()}}}


WEB_PROD = labelled(app="web", env="prod")
WEB_DEV = labelled(app="web", env="dev")
DB = labelled(app="db")
BARE: dict[str, Any] = {"metadata": {"name": "bare"}}
ALL = {"web_prod": WEB_PROD, "web_dev": WEB_DEV, "db": DB, "bare": BARE}


def selected(expr: str | None) -> set[str]:
    pred = label_predicate(expr)
    return {k for k, o in ALL.items() if pred(o)}


# ---------------------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (None, {"web_prod", "web_dev", "db", "bare"}),
        ("", {"web_prod", "web_dev", "db", "bare"}),
        ("   ", {"web_prod", "web_dev", "db", "bare"}),
        ("app=web", {"web_prod", "web_dev"}),
        ("app==web", {"web_prod", "web_dev"}),
        ("app = web", {"web_prod", "web_dev"}),
        ("app!=web", {"db", "bare"}),
        ("app != web", {"db", "bare"}),
        ("env in (prod,dev)", {"web_prod", "web_dev"}),
        ("env in ( prod , staging )", {"web_prod"}),
        ("env notin (prod)", {"web_dev", "db", "bare"}),
        ("env", {"web_prod", "web_dev"}),
        ("!env", {"db", "bare"}),
        ("! env", {"db", "bare"}),
        ("app=web,env=prod", {"web_prod"}),
        ("app=web, env!=prod", {"web_dev"}),
        ("app in (web,db),!env", {"db"}),
        ("env in (prod,dev),app", {"web_prod", "web_dev"}),
        ("app=nope", set()),
        ("app=web,app=db", set()),
        ("app=", set()),
    ],
)
def test_label_selector(expr: str | None, expected: set[str]) -> None:
    assert selected(expr) == expected


def test_parse_requirements() -> None:
    assert parse_label_selector("a=b, c in (x, y),!d,e,f!=g") == [
        Requirement("a", "=", ("b",)),
        Requirement("c", "in", ("x", "y")),
        Requirement("d", "!exists"),
        Requirement("e", "exists"),
        Requirement("f", "!=", ("g",)),
    ]


def test_prefixed_keys() -> None:
    o = labelled(**{"node-role.kubernetes.io_edge": ""})
    assert label_predicate("node-role.kubernetes.io/edge")(o)
    assert label_predicate("node-role.kubernetes.io/edge=")(o)
    assert not label_predicate("!node-role.kubernetes.io/edge")(o)


def test_empty_value_vs_missing() -> None:
    o = labelled(tier="")
    assert label_predicate("tier=")(o)
    assert not label_predicate("tier=")(BARE)
    assert label_predicate("tier!=x")(o)
    assert label_predicate("tier!=x")(BARE)


def test_objects_without_labels_or_metadata() -> None:
    assert label_predicate("!a")({})
    assert label_predicate("!a")({"metadata": None})
    assert not label_predicate("a")({"metadata": {"labels": None}})


@pytest.mark.parametrize(
    "bad",
    ["=web", "app in web", "app in (web", "app web", "a b=c", "(x)", "app notin", "==", "!"],
)
def test_malformed_label_selectors(bad: str) -> None:
    with pytest.raises(BadRequest) as ei:
        parse_label_selector(bad)
    assert ei.value.code == 400
    assert "unable to parse requirement" in ei.value.message


# ---------------------------------------------------------------------------------------
# Field selectors
# ---------------------------------------------------------------------------------------


def pod(name: str, node: str | None, ns: str = "default", phase: str = "Running") -> dict[str, Any]:
    spec: dict[str, Any] = {} if node is None else {"nodeName": node}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec, "status": {"phase": phase}}


PODS = [pod("a", "edge-1"), pod("b", "edge-2"), pod("c", None), pod("d", "edge-1", ns="kube-system", phase="Pending")]


def names_of(expr: str | None) -> list[str]:
    pred = field_predicate(expr)
    return [p["metadata"]["name"] for p in PODS if pred(p)]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (None, ["a", "b", "c", "d"]),
        ("", ["a", "b", "c", "d"]),
        ("spec.nodeName=edge-1", ["a", "d"]),
        ("spec.nodeName==edge-1", ["a", "d"]),
        ("spec.nodeName = edge-1 ", ["a", "d"]),
        ("spec.nodeName!=edge-1", ["b", "c"]),
        ("spec.nodeName=", ["c"]),
        ("spec.nodeName!=", ["a", "b", "d"]),
        ("metadata.name=b", ["b"]),
        ("metadata.name!=b", ["a", "c", "d"]),
        ("metadata.namespace=kube-system", ["d"]),
        ("spec.nodeName=edge-1,metadata.namespace=default", ["a"]),
        ("spec.nodeName=edge-1,status.phase!=Running", ["d"]),
        ("spec.nodeName.deeper=x", []),
    ],
)
def test_field_selector(expr: str | None, expected: list[str]) -> None:
    assert names_of(expr) == expected


def test_field_value() -> None:
    o = {"spec": {"unschedulable": True, "n": 3, "s": {"x": "y"}}}
    assert field_value(o, "spec.unschedulable") == "true"
    assert field_selector_matches("spec.unschedulable=true", o)
    assert field_selector_matches("spec.unschedulable!=false", o)
    assert field_value({"spec": {"unschedulable": False}}, "spec.unschedulable") == "false"
    assert field_value(o, "spec.n") == "3"
    assert field_value(o, "spec.missing") == ""
    assert field_value(o, "spec.n.deeper") == ""


def field_selector_matches(expr: str, o: dict[str, Any]) -> bool:
    return field_predicate(expr)(o)


@pytest.mark.parametrize("bad", ["=x", "1spec=x", "spec.nodeName", "spec nodeName=x", "spec.nodeName~x", "a=b,"])
def test_malformed_field_selectors(bad: str) -> None:
    with pytest.raises(BadRequest) as ei:
        parse_field_selector(bad)
    assert ei.value.code == 400
    assert "invalid field selector" in ei.value.message


def test_parse_field_selector() -> None:
    assert parse_field_selector("spec.nodeName==n1, metadata.name!=x") == [
        ("spec.nodeName", "=", "n1"),
        ("metadata.name", "!=", "x"),
    ]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("spec.nodeName=n1", "n1"),
        ("spec.nodeName==n1", "n1"),
        ("metadata.name=x,spec.nodeName=n1", "n1"),
        ("spec.nodeName=", ""),
        ("spec.nodeName!=n1", None),
        ("metadata.name=x", None),
        ("", None),
        (None, None),
    ],
)
def test_field_equals(expr: str | None, expected: str | None) -> None:
    assert field_equals(expr, "spec.nodeName") == expected


def test_field_equals_rejects_malformed() -> None:
    with pytest.raises(BadRequest):
        field_equals("nonsense", "spec.nodeName")
