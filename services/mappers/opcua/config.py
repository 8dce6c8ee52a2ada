from __future__ import annotations

from edgebus.devices.mapper import MapperSettings
from edgebus.runtime import ServiceSettings


class OpcuaMapperSettings(MapperSettings):
    request_timeout: float = 2.0  # seconds per OPC-UA request when the device sets no timeout


class Settings(ServiceSettings):
    mapper: OpcuaMapperSettings = OpcuaMapperSettings()
