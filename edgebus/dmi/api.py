"""The plain-data side of the DMI layer: what the server hands to its handler."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Protocol


class DmiError(Exception):
    """A DMI call failed (the mapper is not there, answered an error, or timed out)."""


def stubs_available() -> bool:
    """Whether the stubs were generated (``./dev setup``, or a built wheel)."""
    return importlib.util.find_spec("edgebus.dmi.v1beta1.api_pb2") is not None


@dataclass(frozen=True, slots=True)
class MapperInfo:
    name: str
    version: str
    api_version: str
    protocol: str
    address: str  # the mapper's unix socket path
    state: str


@dataclass(frozen=True, slots=True)
class TwinReport:
    """One twin of ``ReportDeviceStatus``: the reported value (and the desired value the
    mapper says it has), with their metadata (``type``, ``timestamp``)."""

    property: str
    reported: str
    reported_metadata: dict[str, str] = field(default_factory=dict)
    observed_desired: str = ""
    observed_metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A device as the edge hands it to a mapper: the Device object (its model's defaults
    applied), the desired values the edge acts on (value, ms), and the value types."""

    device: dict[str, Any]
    desired: dict[str, tuple[str, int]]
    types: dict[str, str]


class DmiHandler(Protocol):
    async def mapper_registered(self, info: MapperInfo, with_data: bool) -> tuple[list[DeviceEntry], list[dict[str, Any]]]:
        """A mapper registered: the devices of its protocol and their models."""
        ...

    async def twins_reported(self, namespace: str, name: str, twins: list[TwinReport]) -> None:
        """Raise ``LookupError`` for a device this edge does not have."""
        ...

    async def state_reported(self, namespace: str, name: str, state: str) -> None:
        """Raise ``LookupError`` for an unknown device, ``ValueError`` for a bad state."""
        ...
