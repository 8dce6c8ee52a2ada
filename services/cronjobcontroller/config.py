from __future__ import annotations

from edgebus.runtime import ServiceSettings
from edgebus.workloads.service import ControllerSettings


class Settings(ServiceSettings):
    cronjobcontroller: ControllerSettings = ControllerSettings()
