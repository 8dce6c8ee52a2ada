from __future__ import annotations

from pydantic import Field

from edgebus.runtime import ServiceSettings
from edgebus.workloads.service import ControllerSettings


class DaemonSetSettings(ControllerSettings):
    bind_to_node: bool = Field(
        True,
        description="Set spec.nodeName of each daemon pod to its node (besides the required node affinity on metadata.name "
        "that Kubernetes sets). false leaves binding to a scheduler, as in Kubernetes.",
    )


class Settings(ServiceSettings):
    daemonsetcontroller: DaemonSetSettings = DaemonSetSettings()
