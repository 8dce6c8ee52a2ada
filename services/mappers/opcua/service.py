"""The OPC-UA mapper: drives the node's Devices whose protocol is ``opcua`` through the
``$hw`` topics (see :mod:`edgebus.devices.mapper`)."""

from __future__ import annotations

from edgebus.devices.mapper import Mapper, mapper_service
from edgebus.objects.devices import PROTOCOL_OPCUA
from edgebus.runtime import Service, setup_logging
from services.mappers.opcua.config import Settings
from services.mappers.opcua.driver import OpcuaDriver

NAME = "mapper-opcua"


def build(settings: Settings | None = None) -> Service[Mapper]:
    settings = settings or Settings()
    return mapper_service(NAME, settings, settings.mapper, PROTOCOL_OPCUA, lambda config, timeout: OpcuaDriver(config, default_timeout=timeout))


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging(NAME, settings)
    run(lambda: build(settings))
