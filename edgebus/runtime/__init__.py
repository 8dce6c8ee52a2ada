"""The service runtime: settings, supervised tasks, ops endpoint, lifecycle."""

from edgebus.runtime.service import Service, main, setup_logging
from edgebus.runtime.settings import LogSettings, NatsSettings, OpsSettings, ServiceSettings, to_env
from edgebus.runtime.tasks import Supervisor

__all__ = [
    "LogSettings",
    "NatsSettings",
    "OpsSettings",
    "Service",
    "ServiceSettings",
    "Supervisor",
    "main",
    "setup_logging",
    "to_env",
]
