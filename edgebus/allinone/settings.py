"""Settings of the all-in-one process and of each service inside it.

The process has the common groups (``node``, ``log``, ``ops``: its one operations endpoint,
``nats``: its own connection, used to follow what the node needs) and an ``allinone`` group.
Every service inside keeps settings of its own - its own NATS credential, data dir, ports -
read from the environment under a prefix of its own, ``EDGEBUS_SVC_<SERVICE>__`` (the
service's name upper-cased, ``.`` as ``_``): ``EDGEBUS_SVC_EDGEHUB__NATS__NKEY_FILE`` is
edgehub's ``EDGEBUS_NATS__NKEY_FILE``. So the services are configured exactly as when each
is its own process; only the prefix moves.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from edgebus.runtime.settings import MEMBER_PREFIX, ServiceSettings, to_env

#: the edge services that always run, in start order
CORE = ("metamanager", "edgehub", "edged", "devicetwin")


def member_prefix(service: str) -> str:
    return f"{MEMBER_PREFIX}{service.upper().replace('.', '_')}__"


def member_env(service: str, settings: dict[str, Any]) -> dict[str, str]:
    """``settings`` (a service's nested settings dict) as the all-in-one process's environment."""
    return to_env(settings, member_prefix(service))


class AllInOneGroup(BaseModel):
    services: list[str] = Field(default_factory=lambda: list(CORE), description="Services that always run (``services.<name>``).")
    on_demand: list[str] = Field(default_factory=list, description="Optional services started only while the node needs them (mappers, edgemesh).")
    linger: float = Field(60.0, ge=0, description="Seconds an on-demand service keeps running after the node stopped needing it.")
    unhealthy_grace: float = Field(10.0, gt=0, description="A service unhealthy this long (a task crash-looping) is stopped and started anew.")
    restart_max: float = Field(30.0, gt=0, description="Cap of the back-off between two restarts of one service.")
    stop_timeout: float = Field(15.0, gt=0, description="Seconds one service may take to stop.")
    children_file: str | None = Field(None, description="JSON list of processes to run beside the services (a node's nats-server, containerd).")


class Settings(ServiceSettings):
    allinone: AllInOneGroup = AllInOneGroup()
