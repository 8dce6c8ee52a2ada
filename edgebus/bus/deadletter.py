"""Dead letters: what a service rejected, stored in its own JetStream domain.

Each domain (the cloud, every edge node) has an ``EDGEBUS_DLQ`` stream that captures only
``edgebus.dlq.<domain>.>``: a reject is stored once, in the domain that rejected it, and its
subject never matches another domain's stream, so it does not cross leaf links into other
domains' stores. The stream is bounded in bytes, messages and age (old letters make room
for new ones), and a payload above :data:`MAX_PAYLOAD` is stored as its first
:data:`KEPT_PREFIX` bytes plus its size and SHA-256, so garbage cannot fill a disk.

:meth:`Recorder.record` returns only once the copy is stored (a JetStream publish,
acknowledged); callers terminate the original only then.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from edgebus import names
from edgebus.bus.connection import Bus, BusMsg
from edgebus.bus.errors import BusError, NoResponders
from edgebus.bus.streams import StreamSpec, ensure_stream

log = logging.getLogger("edgebus.handlers")

REJECTED = Counter("edgebus_messages_rejected_total", "Invalid messages recorded and skipped", ["service", "route"])
DLQ_FAILED = Counter("edgebus_dead_letter_failures_total", "Dead-letter copies that could not be stored (the original is kept)", ["service"])

#: a payload up to this size is kept whole in the dead-letter copy
MAX_PAYLOAD = 16 << 10
#: of a larger payload, this many first bytes are kept (with its size and SHA-256)
KEPT_PREFIX = 4 << 10
#: original headers kept with the copy, at most this many bytes in all
MAX_HEADER_BYTES = 4 << 10
#: the reason, at most this many characters
MAX_REASON = 500



@dataclass(frozen=True, slots=True)
class DlqLimits:
    max_bytes: int
    max_age: float
    max_msgs: int = 100_000


#: an edge node's dead letters: a small disk
EDGE_LIMITS = DlqLimits(max_bytes=32 << 20, max_age=3 * 24 * 3600.0)
#: the cloud's
CLOUD_LIMITS = DlqLimits(max_bytes=256 << 20, max_age=7 * 24 * 3600.0)


def dlq_stream(domain: str, limits: DlqLimits) -> StreamSpec:
    return StreamSpec(
        name=names.STREAM_DLQ,
        subjects=(names.dlq_filter(domain),),
        description=f"Messages edgebus services of domain {domain} rejected, with the reason in the Edgebus-Error header",
        max_msgs=limits.max_msgs,
        max_bytes=limits.max_bytes,
        max_age=limits.max_age,
        # headers and a bounded payload: a copy is never larger than this
        max_msg_size=MAX_PAYLOAD + 2 * MAX_HEADER_BYTES + 1024,
        duplicate_window=120.0,
    )


_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def _clean(v: str, limit: int) -> str:
    """A header value that cannot break the protocol (no control characters), bounded."""
    return _UNSAFE.sub(" ", v)[:limit]


def dead_letter(msg: BusMsg, *, route: str, reason: str) -> tuple[bytes, dict[str, str]]:
    """The payload and headers of a message's dead-letter copy."""
    hdrs: dict[str, str] = {}
    size = 0
    for k, v in msg.headers.items():
        if k.startswith(names.HDR_NATS_PREFIX) or not isinstance(v, str):
            continue
        size += len(k) + len(v) + 4
        if size > MAX_HEADER_BYTES:
            break
        hdrs[_clean(k, 64)] = _clean(v, 1024)
    data = msg.data
    hdrs[names.HDR_ERROR] = _clean(reason, MAX_REASON)
    hdrs[names.HDR_DLQ_SUBJECT] = msg.subject
    hdrs[names.HDR_DLQ_ROUTE] = _clean(route, 64)
    hdrs[names.HDR_DLQ_PAYLOAD_BYTES] = str(len(data))
    if msg.seq:
        hdrs[names.HDR_DLQ_STREAM_SEQ] = str(msg.seq)
    if len(data) > MAX_PAYLOAD:
        hdrs[names.HDR_DLQ_PAYLOAD_SHA256] = hashlib.sha256(data).hexdigest()
        hdrs[names.HDR_DLQ_TRUNCATED] = "true"
        data = data[:KEPT_PREFIX]
    return data, hdrs


class Recorder:
    """Records rejected messages: a log line, a metric and a stored copy in the domain's
    dead-letter stream."""

    def __init__(self, bus: Bus, service: str, *, domain: str = names.CLOUD_DOMAIN, limits: DlqLimits = CLOUD_LIMITS, timeout: float = 5.0) -> None:
        self.bus = bus
        self.service = service
        self.domain = domain
        self.spec = dlq_stream(domain, limits)
        self.subject = names.dlq_subject(domain, service)
        self.timeout = timeout
        self.ensured = False
        self.recent: list[dict[str, Any]] = []

    async def ensure(self) -> None:
        await ensure_stream(self.bus, self.spec)
        self.ensured = True

    async def record(self, route: str, msg: BusMsg, reason: str) -> bool:
        """Log, count and store a copy of ``msg``; True once the copy is stored (the caller
        may then terminate the original), False when it could not be (keep the original)."""
        REJECTED.labels(self.service, route).inc()
        log.warning("rejected message on %s (route %s, id %s): %s", msg.subject, route, msg.headers.get(names.HDR_MSG_ID, "-"), reason)
        self.recent.append({"subject": msg.subject, "route": route, "reason": reason, "at": time.time()})
        del self.recent[:-100]
        data, hdrs = dead_letter(msg, route=route, reason=reason)
        if msg.seq:
            # a redelivery after a lost ack is not stored twice
            hdrs[names.HDR_MSG_ID] = f"dlq:{self.service}:{route}:{msg.seq}:{msg.headers.get(names.HDR_MSG_ID, '')}"[:200]
        try:
            try:
                await self._store(data, hdrs)
            except NoResponders:  # the stream is not there (yet, or any more): create it
                await self.ensure()
                await self._store(data, hdrs)
            return True
        except BusError as exc:
            DLQ_FAILED.labels(self.service).inc()
            log.error("dead-letter copy of %s not stored (%s): the message is kept and comes back", msg.subject, exc)
            return False

    async def _store(self, data: bytes, hdrs: dict[str, str]) -> None:
        await self.bus.js_publish(self.subject, data, headers=hdrs, stream=names.STREAM_DLQ, timeout=self.timeout)
