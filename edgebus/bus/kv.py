"""A NATS KV bucket with revisions, compare-and-set, custom headers and resumable watches.

The bucket is a standard JetStream KV bucket (``nats kv ls`` shows it), but writes go
through plain JetStream publishes so that they can carry edgebus headers and the deleted
object in a delete marker, and watches can resume from any revision (nats-py's watcher
cannot).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

import nats.js.errors
from nats.js import api

from edgebus import names
from edgebus.bus.connection import Bus, BusMsg
from edgebus.bus.consumer import CaughtUp, read_stream
from edgebus.bus.errors import WrongRevision
from edgebus.bus.streams import _wrap, get_last, stream_state

log = logging.getLogger("edgebus.bus")

OP_PUT = "PUT"
OP_DEL = "DEL"
OP_PURGE = "PURGE"


class KeyExists(WrongRevision):
    """``create`` found a live value under the key."""


@dataclass(slots=True)
class KVEntry:
    key: str
    value: bytes
    revision: int
    op: str = OP_PUT
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return self.op in (OP_DEL, OP_PURGE)


class KV:
    def __init__(self, bus: Bus, bucket: str, *, domain: str | None = None) -> None:
        self.bus = bus
        self.bucket = bucket
        self.domain = domain
        self.stream = names.kv_stream(bucket)
        self._prefix = names.kv_subject_prefix(bucket)

    async def ensure(
        self,
        *,
        history: int = 1,
        replicas: int = 1,
        memory: bool = False,
        ttl: float | None = None,
        marker_ttl: float | None = None,
        max_age: float | None = None,
    ) -> None:
        """Create the bucket if missing (``ttl``: entries not rewritten within it expire).

        ``marker_ttl``: entries may carry their own TTL (a ``Nats-TTL`` header, JetStream
        per-message TTL); when one expires the server leaves a delete marker (header
        ``Nats-Marker-Reason``) that watchers see as a delete and that itself expires after
        ``marker_ttl`` seconds. An existing bucket is updated to do so. ``max_age``: also
        bring an existing bucket's max age to this (an older one may have been made with
        another); entries written with a ``Nats-TTL`` header expire after their own."""
        js = self.bus.js(self.domain)
        try:
            try:
                info = await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                info = None
            if info is not None:
                cfg = info.config
                changed = False
                if marker_ttl and (not cfg.allow_msg_ttl or not cfg.subject_delete_marker_ttl):
                    cfg.allow_msg_ttl = True
                    cfg.subject_delete_marker_ttl = marker_ttl
                    changed = True
                    log.info("KV bucket %s: per-entry TTLs enabled", self.bucket)
                if max_age is not None and abs((cfg.max_age or 0) - max_age) > 1e-3:
                    cfg.max_age = max_age
                    cfg.duplicate_window = min(cfg.duplicate_window or max_age, max_age)
                    cfg.allow_msg_ttl = True
                    changed = True
                    log.info("KV bucket %s: max age now %gs", self.bucket, max_age)
                if changed:
                    await js.update_stream(cfg)
                return
            await js.create_key_value(
                api.KeyValueConfig(
                    bucket=self.bucket,
                    history=history,
                    direct=True,
                    ttl=ttl,
                    replicas=self.bus.replicas_for(replicas, self.domain),
                    storage=api.StorageType.MEMORY if memory else api.StorageType.FILE,
                    limit_marker_ttl=marker_ttl,
                )
            )
            log.info("created KV bucket %s", self.bucket)
        except Exception as exc:
            raise _wrap(exc, f"KV bucket {self.bucket}") from exc

    def _entry(self, msg: BusMsg) -> KVEntry:
        op = msg.headers.get(names.HDR_KV_OP, OP_PUT)
        if names.HDR_MARKER_REASON in msg.headers:
            op = OP_PURGE  # the server removed the entry (its TTL ran out) and left this marker
        return KVEntry(key=msg.subject[len(self._prefix) :], value=msg.data, revision=msg.seq, op=op, headers=msg.headers)

    async def entry(self, key: str) -> KVEntry | None:
        """The latest entry for ``key``, including delete markers; None if never written."""
        msg = await get_last(self.bus, self.stream, names.kv_subject(self.bucket, key), domain=self.domain)
        return None if msg is None else self._entry(msg)

    async def get(self, key: str) -> KVEntry | None:
        """The live value for ``key`` (None if missing or deleted)."""
        e = await self.entry(key)
        return None if e is None or e.deleted else e

    async def _publish(self, key: str, value: bytes, headers: dict[str, str] | None, expected: int | None) -> int:
        ack = await self.bus.js_publish(
            names.kv_subject(self.bucket, key),
            value,
            headers=headers or None,
            stream=self.stream,
            domain=self.domain,
            expected_last_subject_seq=expected,
        )
        return ack.seq

    async def put(self, key: str, value: bytes, *, headers: dict[str, str] | None = None) -> int:
        return await self._publish(key, value, headers, None)

    async def update(self, key: str, value: bytes, revision: int, *, headers: dict[str, str] | None = None) -> int:
        """Write only if the key's latest revision is ``revision`` (compare-and-set)."""
        return await self._publish(key, value, headers, revision)

    async def create(self, key: str, value: bytes, *, headers: dict[str, str] | None = None) -> int:
        """Write only if the key has no live value."""
        try:
            return await self._publish(key, value, headers, 0)
        except WrongRevision:
            e = await self.entry(key)
            if e is None or not e.deleted:
                raise KeyExists(f"key {key} exists", current=e.revision if e else None) from None
            try:
                return await self._publish(key, value, headers, e.revision)
            except WrongRevision as exc:
                raise KeyExists(f"key {key} exists", current=exc.current) from None

    async def delete(
        self, key: str, *, revision: int | None = None, value: bytes = b"", headers: dict[str, str] | None = None
    ) -> int:
        """Write a delete marker (which may carry the deleted value) for ``key``."""
        hdrs = dict(headers or {})
        hdrs[names.HDR_KV_OP] = OP_DEL
        return await self._publish(key, value, hdrs, revision)

    async def last_revision(self) -> int:
        return (await stream_state(self.bus, self.stream, domain=self.domain)).last_seq

    async def list(self, key_filter: str = ">") -> tuple[list[KVEntry], int]:
        """Live entries matching ``key_filter`` and a revision at or before the snapshot."""
        revision = await self.last_revision()
        out: list[KVEntry] = []
        async with aclosing(
            read_stream(
                self.bus,
                self.stream,
                self._prefix + key_filter,
                domain=self.domain,
                last_per_subject=True,
                stop_when_caught_up=True,
            )
        ) as it:
            async for m in it:
                if isinstance(m, CaughtUp):
                    break
                e = self._entry(m)
                if not e.deleted:
                    out.append(e)
        return out, revision

    async def watch(
        self,
        key_filters: str | builtins.list[str] = ">",
        *,
        from_revision: int | None = None,
        last_per_subject: bool = False,
    ) -> AsyncGenerator[KVEntry | CaughtUp, None]:
        """Every change after ``from_revision`` (exclusive), or current values first
        (``last_per_subject``), then live changes, forever. Delete markers included."""
        filters = [key_filters] if isinstance(key_filters, str) else key_filters
        async with aclosing(
            read_stream(
                self.bus,
                self.stream,
                [self._prefix + f for f in filters],
                domain=self.domain,
                start_seq=(from_revision + 1) if from_revision is not None else None,
                last_per_subject=last_per_subject and from_revision is None,
            )
        ) as it:
            async for m in it:
                if isinstance(m, CaughtUp):
                    yield m
                else:
                    yield self._entry(m)
