"""Run edgebus services in-process against real servers (tests and benchmarks)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from edgebus.runtime import Service


def build_service(name: str, **settings: Any) -> Service[Any]:
    """Build ``services.<name>`` from settings given as keyword groups, e.g.
    ``build_service("metamanager", node="edge-1", nats={"url": u}, metamanager={"data_dir": d})``."""
    config = importlib.import_module(f"services.{name}.config")
    mod = importlib.import_module(f"services.{name}.service")
    build: Callable[[Any], Service[Any]] = mod.build
    return build(config.Settings(**settings))
