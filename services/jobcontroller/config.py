from __future__ import annotations

from pydantic import Field

from edgebus.runtime import ServiceSettings
from edgebus.workloads.service import ControllerSettings


class JobSettings(ControllerSettings):
    backoff_base: float = Field(10.0, description="Seconds before a failed pod is replaced, doubling per failure (at most 6 min), as Kubernetes.")


class Settings(ServiceSettings):
    jobcontroller: JobSettings = JobSettings()
