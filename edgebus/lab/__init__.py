"""The lab: a cloud and N edge nodes on one machine, every module its own process.

:mod:`edgebus.lab.plan` decides every process (command, settings, ports, dirs);
:mod:`edgebus.lab.supervisor` runs them.
"""

from edgebus.lab.plan import (
    CLOUD_SERVICES,
    CLOUD_USERS,
    DEFAULT_BASE_PORT,
    DEFAULT_DIR,
    EDGE_SERVICES,
    LabPlan,
    WORKLOAD_CONTROLLERS,
    ProcSpec,
)
from edgebus.lab.supervisor import Lab, LabState, control, create_token, load_state, port_free

__all__ = [
    "CLOUD_SERVICES",
    "CLOUD_USERS",
    "DEFAULT_BASE_PORT",
    "DEFAULT_DIR",
    "EDGE_SERVICES",
    "Lab",
    "LabPlan",
    "LabState",
    "ProcSpec",
    "WORKLOAD_CONTROLLERS",
    "control",
    "load_state",
    "create_token",
    "port_free",
]
