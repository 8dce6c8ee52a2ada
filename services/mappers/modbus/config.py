from __future__ import annotations

from edgebus.devices.mapper import MapperSettings
from edgebus.runtime import ServiceSettings


class ModbusMapperSettings(MapperSettings):
    request_timeout: float = 1.0  # seconds per Modbus request when the device sets no timeout


class Settings(ServiceSettings):
    mapper: ModbusMapperSettings = ModbusMapperSettings()
