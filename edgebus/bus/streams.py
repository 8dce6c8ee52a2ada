"""Streams and consumers described in edgebus's own terms, created idempotently."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.js import api

from edgebus import names
from edgebus.bus.connection import Bus, BusMsg
from edgebus.bus.errors import BusError, NoResponders, NotConnected, RequestTimeout, StreamNotFound

log = logging.getLogger("edgebus.bus")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Source another stream, possibly in another JetStream domain."""

    name: str
    filter_subject: str | None = None
    domain: str | None = None
    #: prefix of the subjects its messages are delivered on (across domains: the only ones
    #: the sourcing server may receive, e.g. a node's ``edgebus.deliver.<node>``)
    deliver_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...] = ()
    description: str = ""
    max_msgs_per_subject: int = -1
    max_age: float = 0.0  # seconds, 0 = forever
    max_bytes: int = -1
    max_msgs: int = -1
    memory: bool = False
    duplicate_window: float = 120.0
    sources: tuple[SourceSpec, ...] = ()
    replicas: int = 1
    discard_new: bool = False
    max_msg_size: int = -1
    #: per-message TTLs (``Nats-TTL``; NATS 2.11+); cannot be turned off again
    allow_msg_ttl: bool = False
    #: atomic batch publishes (NATS 2.12+)
    allow_atomic: bool = False
    #: ``Nats-Rollup`` headers (a message replaces the earlier ones of its subject)
    allow_rollup: bool = False

    def to_config(self) -> api.StreamConfig:
        return api.StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects) or None,
            max_msgs_per_subject=self.max_msgs_per_subject,
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            max_msgs=self.max_msgs,
            storage=api.StorageType.MEMORY if self.memory else api.StorageType.FILE,
            duplicate_window=self.duplicate_window,
            num_replicas=self.replicas,
            discard=api.DiscardPolicy.NEW if self.discard_new else api.DiscardPolicy.OLD,
            sources=[_source(s) for s in self.sources] or None,
            allow_direct=True,
            max_msg_size=self.max_msg_size,
            allow_msg_ttl=self.allow_msg_ttl or None,
            allow_atomic=self.allow_atomic or None,
            allow_rollup_hdrs=self.allow_rollup or None,  # type: ignore[arg-type]  # None leaves it out of the request
        )


def _source(s: SourceSpec) -> api.StreamSource:
    ext = api.ExternalStream(api=names.js_api_prefix(s.domain), deliver=s.deliver_prefix) if s.domain else None
    return api.StreamSource(name=s.name, filter_subject=s.filter_subject, external=ext)


@dataclass(slots=True)
class SourceState:
    name: str
    lag: int
    active_ms: int
    error: str | None


@dataclass(slots=True)
class StreamState:
    name: str
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: int
    subjects: list[str] = field(default_factory=list)
    sources: list[SourceState] = field(default_factory=list)
    max_msgs_per_subject: int = -1
    created: str = ""


@dataclass(slots=True)
class ConsumerState:
    stream: str
    name: str
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    delivered_stream_seq: int
    ack_floor_stream_seq: int
    filter_subject: str | None


def _wrap(exc: Exception, what: str) -> Exception:
    if isinstance(exc, nats.js.errors.NotFoundError):
        return StreamNotFound(f"{what}: not found")
    if isinstance(exc, nats.js.errors.APIError) and exc.code == 404:
        return StreamNotFound(f"{what}: {exc.description}")
    if isinstance(exc, (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError)):
        return NoResponders(f"{what}: JetStream not reachable")
    if isinstance(exc, (nats.errors.TimeoutError, TimeoutError)):
        return RequestTimeout(f"{what}: timed out")
    if isinstance(exc, nats.errors.ConnectionClosedError):
        return NotConnected(str(exc))
    if isinstance(exc, BusError):
        return exc
    return BusError(f"{what}: {exc}")


def _same(spec: StreamSpec, cfg: api.StreamConfig) -> bool:
    want = spec.to_config()
    def srcs(c: api.StreamConfig) -> list[tuple[str, str | None, str | None]]:
        return sorted((s.name, s.filter_subject or None, s.external.api if s.external else None) for s in (c.sources or []))
    return (
        sorted(want.subjects or []) == sorted(cfg.subjects or [])
        and want.max_msgs_per_subject == cfg.max_msgs_per_subject
        and srcs(want) == srcs(cfg)
        and (want.max_age or 0) == (cfg.max_age or 0)
        and (want.max_bytes or -1) == (cfg.max_bytes or -1)
        and (want.max_msgs or -1) == (cfg.max_msgs or -1)
        and (want.max_msg_size or -1) == (cfg.max_msg_size or -1)
        and (want.duplicate_window or 0) == (cfg.duplicate_window or 0)
        and bool(want.allow_msg_ttl) <= bool(cfg.allow_msg_ttl)  # cannot be turned off
        and bool(want.allow_atomic) == bool(cfg.allow_atomic)
        and bool(want.allow_rollup_hdrs) == bool(cfg.allow_rollup_hdrs)
        and (want.num_replicas or 1) <= (cfg.num_replicas or 1)  # a cluster scales R1 up
    )


async def ensure_stream(bus: Bus, spec: StreamSpec, *, domain: str | None = None, update: bool = True) -> None:
    """Create the stream, or update it if its configuration drifted (``update=False``:
    only create it; for services that use a stream another service owns, so two owners
    never fight over its limits)."""
    js = bus.js(domain)
    replicas = bus.replicas_for(spec.replicas, domain)
    if replicas != spec.replicas:
        spec = dataclasses.replace(spec, replicas=replicas)
    try:
        try:
            info = await js.stream_info(spec.name)
        except nats.js.errors.NotFoundError:
            await js.add_stream(spec.to_config())
            log.info("created stream %s%s", spec.name, f" in domain {domain}" if domain else "")
            return
        if update and not _same(spec, info.config):
            await js.update_stream(spec.to_config())
            log.info("updated stream %s", spec.name)
    except Exception as exc:
        raise _wrap(exc, f"ensure stream {spec.name}") from exc


async def kick_sources(bus: Bus, spec: StreamSpec, *, domain: str | None = None) -> None:
    """Remove and re-add a stream's sources.

    After the origin's server restarts, a sourcing stream may back off for ~40 s before it
    retries; re-adding the sources makes it resume at once, from where it left off.
    """
    js = bus.js(domain)
    cfg = spec.to_config()
    bare = spec.to_config()
    bare.sources = []
    try:
        await js.update_stream(bare)
        await js.update_stream(cfg)
    except Exception as exc:
        raise _wrap(exc, f"kick sources of {spec.name}") from exc


def _state(info: api.StreamInfo) -> StreamState:
    """The stream's state; sources are filled in by :func:`stream_state` only."""
    st = info.state
    return StreamState(
        name=info.config.name or "",
        messages=st.messages,
        bytes=st.bytes,
        first_seq=st.first_seq,
        last_seq=st.last_seq,
        consumers=st.consumer_count,
        subjects=list(info.config.subjects or []),
        max_msgs_per_subject=info.config.max_msgs_per_subject,
        created=info.created.isoformat() if info.created else "",
    )


async def stream_state(bus: Bus, stream: str, *, domain: str | None = None, subjects_filter: str | None = None) -> StreamState:
    try:
        info = await bus.js(domain).stream_info(stream, subjects_filter=subjects_filter)
    except Exception as exc:
        raise _wrap(exc, f"stream {stream}") from exc
    out = _state(info)
    for s in info.sources or []:
        err = None
        if s.error:
            err = str(s.error.get("description") or s.error)
        out.sources.append(SourceState(name=s.name, lag=s.lag or 0, active_ms=int((s.active or 0) / 1_000_000), error=err))
    return out


async def list_streams(bus: Bus, *, domain: str | None = None) -> list[StreamState]:
    try:
        infos = await bus.js(domain).streams_info()
    except Exception as exc:
        raise _wrap(exc, "list streams") from exc
    return [_state(info) for info in infos]


async def get_last(bus: Bus, stream: str, subject: str, *, domain: str | None = None) -> BusMsg | None:
    """The last message on ``subject`` (wildcards allowed), or None."""
    try:
        raw = await bus.js(domain).get_last_msg(stream, subject, direct=True)
    except nats.js.errors.NotFoundError:
        return None
    except Exception as exc:
        raise _wrap(exc, f"get last {subject} from {stream}") from exc
    return BusMsg(subject=raw.subject or subject, data=raw.data or b"", headers=dict(raw.headers or {}), seq=raw.seq or 0)


async def get_msg(bus: Bus, stream: str, seq: int, *, domain: str | None = None) -> BusMsg | None:
    try:
        raw = await bus.js(domain).get_msg(stream, seq=seq, direct=True)
    except nats.js.errors.NotFoundError:
        return None
    except Exception as exc:
        raise _wrap(exc, f"get {seq} from {stream}") from exc
    return BusMsg(subject=raw.subject or "", data=raw.data or b"", headers=dict(raw.headers or {}), seq=raw.seq or seq)


@dataclass(frozen=True, slots=True)
class DurableSpec:
    """A durable pull consumer shared by every instance of a service."""

    stream: str
    durable: str
    filter_subject: str | None = None
    domain: str | None = None
    #: several filters (NATS 2.10+); used instead of ``filter_subject`` when given
    filter_subjects: tuple[str, ...] = ()
    #: seconds an idle fetch waits on the server before it is renewed
    expires: float = 1.0
    ack_wait: float = 30.0
    max_deliver: int = -1
    max_ack_pending: int = 1000
    batch: int = 100

    def to_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            filter_subject=None if self.filter_subjects else self.filter_subject,
            filter_subjects=list(self.filter_subjects) or None,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
        )


async def ensure_consumer(bus: Bus, spec: DurableSpec) -> None:
    """Create the durable consumer (``CONSUMER.CREATE`` also updates an existing one)."""
    try:
        await bus.js(spec.domain).add_consumer(spec.stream, spec.to_config())
    except Exception as exc:
        raise _wrap(exc, f"consumer {spec.durable} on {spec.stream}") from exc


async def consumer_state(bus: Bus, stream: str, durable: str, *, domain: str | None = None) -> ConsumerState:
    try:
        info = await bus.js(domain).consumer_info(stream, durable)
    except Exception as exc:
        raise _wrap(exc, f"consumer {durable} on {stream}") from exc
    return ConsumerState(
        stream=stream,
        name=durable,
        num_pending=info.num_pending or 0,
        num_ack_pending=info.num_ack_pending or 0,
        num_redelivered=info.num_redelivered or 0,
        delivered_stream_seq=(info.delivered.stream_seq if info.delivered else 0) or 0,
        ack_floor_stream_seq=(info.ack_floor.stream_seq if info.ack_floor else 0) or 0,
        filter_subject=info.config.filter_subject,
    )


async def list_consumers(bus: Bus, stream: str, *, domain: str | None = None) -> list[ConsumerState]:
    try:
        infos = await bus.js(domain).consumers_info(stream)
    except Exception as exc:
        raise _wrap(exc, f"consumers of {stream}") from exc
    return [
        ConsumerState(
            stream=stream,
            name=i.name or "",
            num_pending=i.num_pending or 0,
            num_ack_pending=i.num_ack_pending or 0,
            num_redelivered=i.num_redelivered or 0,
            delivered_stream_seq=(i.delivered.stream_seq if i.delivered else 0) or 0,
            ack_floor_stream_seq=(i.ack_floor.stream_seq if i.ack_floor else 0) or 0,
            filter_subject=i.config.filter_subject,
        )
        for i in infos
    ]


async def jetstream_reachable(bus: Bus, domain: str, *, timeout: float = 1.0) -> bool:
    """True when the JetStream API of ``domain`` answers (for an edge: the cloud link is up)."""
    try:
        await bus.request(f"{names.js_api_prefix(domain)}.INFO", b"", timeout=timeout)
        return True
    except (NoResponders, RequestTimeout, NotConnected):
        return False
