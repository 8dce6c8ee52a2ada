"""The bus layer uses nats-py through its public API only: a private attribute (``nc._nuid``,
``msg._client``) can change in any nats-py release without notice."""

from __future__ import annotations

import ast
from pathlib import Path

import edgebus.bus

BUS = Path(edgebus.bus.__file__).parent


def private_accesses(tree: ast.AST) -> list[str]:
    """``x._name`` where ``x`` is not ``self`` / ``cls`` (our own objects' internals are ours)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            out.append(f"line {node.lineno}: {ast.unparse(node)}")
    return out


def test_the_bus_layer_touches_no_private_attribute() -> None:
    found = {p.name: private_accesses(ast.parse(p.read_text())) for p in sorted(BUS.glob("*.py"))}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_check_sees_private_accesses() -> None:
    assert private_accesses(ast.parse("name = bus.nc._nuid.next()\nawait m.raw._client.publish(r)\nself._ok = 1")) == [
        "line 1: bus.nc._nuid",
        "line 2: m.raw._client",
    ]
