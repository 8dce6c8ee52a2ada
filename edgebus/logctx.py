"""Per-message logging context: which message (and its parent) a log line is about."""

from __future__ import annotations

import contextvars
import logging

msg_ids: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar("edgebus_msg_ids", default=("-", "-"))


class ContextFilter(logging.Filter):
    """Adds ``service``, ``node``, ``msg_id`` and ``parent_id`` to every record."""

    def __init__(self, service: str, node: str | None) -> None:
        super().__init__()
        self.service = service
        self.node = node or "-"

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.node = self.node
        record.msg_id, record.parent_id = msg_ids.get()
        return True
