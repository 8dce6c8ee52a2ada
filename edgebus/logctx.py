"""Per-message logging context: which message (and its parent) a log line is about."""

from __future__ import annotations

import contextvars
import logging

msg_ids: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("edgebus_msg_ids", default=("-", "-"))
#: the service a log line comes from, where several run in one process (all-in-one)
service_name: contextvars.ContextVar[str | None] = contextvars.ContextVar("edgebus_service", default=None)


class ContextFilter(logging.Filter):
    """Adds ``service``, ``node``, ``msg_id`` and ``parent_id`` to every record."""

    def __init__(self, service: str, node: str | None) -> None:
        super().__init__()
        self.service = service
        self.node = node or "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = service_name.get() or self.service
        record.node = self.node
        record.msg_id, record.parent_id = msg_ids.get()
        return True
