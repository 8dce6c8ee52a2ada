"""The message envelope (KubeEdge's beehive model) and its wire encoding.

Body: a msgpack map ``{id, parent_id, timestamp, resource_version, sync, seq, route,
content}``; a field at its default is left out (and read back as its default). The routing
metadata is repeated in NATS headers (``Nats-Msg-Id`` = id, plus readable op / resource / rv
/ source headers) so standard NATS tools can make sense of the traffic without decoding
msgpack.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from edgebus import names
from edgebus.errors import InvalidMessage

# Operations (route.operation), as in KubeEdge.
OP_INSERT = "insert"
OP_UPDATE = "update"
OP_DELETE = "delete"
OP_QUERY = "query"
OP_RESPONSE = "response"
OP_KEEPALIVE = "keepalive"
OP_ERROR = "error"


@dataclass(frozen=True, slots=True)
class Route:
    source: str = ""
    group: str = ""
    operation: str = ""
    resource: str = ""


@dataclass(frozen=True, slots=True)
class Envelope:
    route: Route
    content: Any = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: str = ""
    timestamp: int = field(default_factory=time.time_ns)
    resource_version: str = ""
    #: True when the sender waits for a response (KubeEdge's ``sync`` flag).
    sync: bool = False
    #: the sender's monotonic sequence for this route (downstream: sync version).
    seq: int = 0

    # -- construction helpers ---------------------------------------------------------
    @classmethod
    def new(
        cls,
        *,
        source: str,
        operation: str,
        resource: str = "",
        group: str = "",
        content: Any = None,
        parent_id: str = "",
        resource_version: str = "",
        seq: int = 0,
        id: str | None = None,
        sync: bool = False,
    ) -> Envelope:
        kwargs: dict[str, Any] = {}
        if id is not None:
            kwargs["id"] = id
        return cls(
            route=Route(source=source, group=group, operation=operation, resource=resource),
            content=content,
            parent_id=parent_id,
            resource_version=resource_version,
            seq=seq,
            sync=sync,
            **kwargs,
        )

    def reply(self, *, source: str, content: Any, operation: str = OP_RESPONSE) -> Envelope:
        return Envelope(
            route=replace(self.route, source=source, operation=operation),
            content=content,
            parent_id=self.id,
        )

    # -- wire -------------------------------------------------------------------------
    def encode(self) -> bytes:
        """The wire body. A field at its default (``""``, ``False``, ``0``) is left out:
        :meth:`decode` reads a missing field as its default, so a heartbeat or a plain event
        costs the link only what it says."""
        route = {k: v for k, v in (("source", self.route.source), ("group", self.route.group), ("operation", self.route.operation), ("resource", self.route.resource)) if v}
        body: dict[str, Any] = {"id": self.id, "timestamp": self.timestamp, "route": route}
        if self.parent_id:
            body["parent_id"] = self.parent_id
        if self.resource_version:
            body["resource_version"] = self.resource_version
        if self.sync:
            body["sync"] = True
        if self.seq:
            body["seq"] = self.seq
        if self.content is not None:
            body["content"] = self.content
        return msgpack.packb(body, use_bin_type=True)

    def headers(self) -> dict[str, str]:
        hdrs = {
            names.HDR_MSG_ID: self.id,
            names.HDR_OP: self.route.operation,
            names.HDR_SOURCE: self.route.source,
            names.CONTENT_TYPE: names.MSGPACK,
        }
        if self.route.resource:
            hdrs[names.HDR_RESOURCE] = self.route.resource
        if self.resource_version:
            hdrs[names.HDR_RV] = self.resource_version
        if self.parent_id:
            hdrs[names.HDR_PARENT] = self.parent_id
        if self.seq:
            hdrs[names.HDR_SYNC] = str(self.seq)
        return hdrs

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Decode a wire body; anything malformed raises :class:`InvalidMessage`."""
        try:
            raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except Exception as exc:  # msgpack raises a zoo of exception types
            raise InvalidMessage(f"body is not msgpack: {exc}") from None
        if not isinstance(raw, dict):
            raise InvalidMessage(f"envelope must be a map, got {type(raw).__name__}")
        route = raw.get("route")
        if not isinstance(route, dict):
            raise InvalidMessage("envelope has no route map")
        try:
            env = cls(
                route=Route(
                    source=_str(route, "source"),
                    group=_str(route, "group"),
                    operation=_str(route, "operation"),
                    resource=_str(route, "resource"),
                ),
                content=raw.get("content"),
                id=_str(raw, "id"),
                parent_id=_str(raw, "parent_id"),
                timestamp=_int(raw, "timestamp"),
                resource_version=_str(raw, "resource_version"),
                sync=_bool(raw, "sync"),
                seq=_int(raw, "seq"),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidMessage(f"malformed envelope: {exc}") from None
        if not env.id:
            raise InvalidMessage("envelope has no id")
        if not env.route.operation:
            raise InvalidMessage("envelope has no route.operation")
        return env


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise TypeError(f"{key} must be a string, got {type(v).__name__}")
    return v


def _bool(d: dict[str, Any], key: str) -> bool:
    v = d.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise TypeError(f"{key} must be a boolean, got {type(v).__name__}")
    return v


def _int(d: dict[str, Any], key: str) -> int:
    v = d.get(key, 0)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{key} must be an integer, got {type(v).__name__}")
    return v


def pack(obj: Any) -> bytes:
    """msgpack-encode a plain value (objects stored in KV and LMDB)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise InvalidMessage(f"value is not msgpack: {exc}") from None
