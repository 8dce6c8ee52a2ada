"""Every NATS subject, stream, consumer, KV bucket and JetStream domain edgebus uses.

This module is the contract documented in ``docs/architecture.md`` ("Names"). No other
module formats a subject by hand: they call the functions here, so the table in the docs,
the code and what ``nats sub 'edgebus.>'`` shows can never drift apart.

Node names and object names are DNS-1123 subdomains (lowercase alphanumerics, ``-`` and
``.``). A ``.`` separates NATS subject tokens, and JetStream domains and stream names may
not contain one, so inside a token every ``.`` becomes ``_`` (which DNS-1123 forbids, so
the mapping is reversible). Cluster-scoped objects use ``_`` as their namespace token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "edgebus"
CLOUD_DOMAIN = "cloud"

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOKEN = re.compile(r"^[a-z0-9_-]+$")
CLUSTER_NS = "_"
#: stands for "the node whose credential this is" in the permission templates of
#: :mod:`edgebus.identity.roles`: nats-server replaces it with the node token of the user JWT
#: (the only non-name token the subject builders below accept)
TEMPLATE_NODE = "{{name()}}"
#: the same in a site server's credential: one subject per member node (its ``node`` tags)
TEMPLATE_MEMBER = "{{tag(node)}}"


class InvalidName(ValueError):
    """A name that cannot be encoded into a subject token."""


def is_dns1123_subdomain(name: str) -> bool:
    return isinstance(name, str) and len(name) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(name))


def encode_token(name: str) -> str:
    """Encode a DNS-1123 name as one subject token (reversible: ``.`` -> ``_``)."""
    if name in (TEMPLATE_NODE, TEMPLATE_MEMBER):
        return name
    if not is_dns1123_subdomain(name):
        raise InvalidName(f"{name!r} is not a DNS-1123 subdomain")
    return name.replace(".", "_")


def decode_token(token: str) -> str:
    if not _TOKEN.fullmatch(token):
        raise InvalidName(f"{token!r} is not an encoded name token")
    return token.replace("_", ".")


#: Object names of the RBAC kinds may also contain ``:`` (``system:node``): inside a
#: token (and a KV key) it becomes ``=``, which no DNS-1123 name contains either.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$")
_NAME_TOKEN = re.compile(r"^[a-z0-9_=-]+$")


def is_object_name(name: str) -> bool:
    """A name an object may have: a DNS-1123 subdomain, or (RBAC kinds) one with ``:``."""
    return isinstance(name, str) and len(name) <= 253 and bool(_OBJECT_NAME.fullmatch(name))


def encode_name(name: str) -> str:
    """An object name as one token (``.`` -> ``_``, ``:`` -> ``=``; reversible)."""
    if not is_object_name(name):
        raise InvalidName(f"{name!r} is not a valid object name")
    return name.replace(".", "_").replace(":", "=")


def decode_name(token: str) -> str:
    if not _NAME_TOKEN.fullmatch(token):
        raise InvalidName(f"{token!r} is not an encoded name token")
    return token.replace("_", ".").replace("=", ":")


def encode_ns(namespace: str | None) -> str:
    return encode_token(namespace) if namespace else CLUSTER_NS


def decode_ns(token: str) -> str | None:
    return None if token == CLUSTER_NS else decode_token(token)


# ---------------------------------------------------------------------------------------
# JetStream domains
# ---------------------------------------------------------------------------------------


def node_domain(node: str) -> str:
    """The JetStream domain of an edge node's leaf server (the node token itself)."""
    tok = encode_token(node)
    if tok == CLOUD_DOMAIN:
        raise InvalidName(f"node name {node!r} is reserved for the cloud domain")
    return tok


def js_api_prefix(domain: str) -> str:
    return f"$JS.{domain}.API"


# ---------------------------------------------------------------------------------------
# Streams, consumers, buckets
# ---------------------------------------------------------------------------------------

#: cloud: desired state for every node, latest message per subject only.
STREAM_DOWN = "EDGEBUS_DOWN"
#: cloud: everything edges send up (heartbeats, status, events), forwarded by edgehub.
STREAM_UP = "EDGEBUS_UP"
#: edge: this node's copy of its desired state, pulled from ``STREAM_DOWN`` by edgehub.
STREAM_EDGE_DOWN = "EDGEBUS_EDGE_DOWN"
#: edge: the outbox local services publish into; edgehub forwards it to ``STREAM_UP``.
STREAM_EDGE_UP = "EDGEBUS_EDGE_UP"
#: every domain: messages a service rejected, kept for inspection.
STREAM_DLQ = "EDGEBUS_DLQ"

#: cloud KV bucket holding every API object; resourceVersion = KV revision.
BUCKET_OBJECTS = "edgebus-objects"
#: cloud KV bucket of leader leases (one key per role, entries expire unless renewed).
BUCKET_LEASES = "edgebus-leases"
#: cloud KV bucket of node identities (cloudhub): key = node token, value = msgpack record
#: (identity key, link certificate, when joined, when revoked)
BUCKET_IDENTITY = "edgebus-identity"
#: cloud KV bucket of allocated Service cluster IPs: key = :func:`cluster_ip_key`, value =
#: the holder (``{"service": "<ns>/<name>", "uid": ...}``)
BUCKET_CLUSTERIPS = "edgebus-clusterips"
#: the latest resource usage report of every node (``kubectl top``), key = the node's token
BUCKET_METRICS = "edgebus-metrics"
#: the resource token of usage reports (``edgebus.{outbox,up}.<node>.status.metrics._.<node>``)
METRICS_RESOURCE = "metrics"
#: the system-account request that pushes an updated account JWT to the servers' resolvers
CLAIMS_UPDATE_SUBJECT = "$SYS.REQ.CLAIMS.UPDATE"
#: a server's leaf connections (asked of a node's own server by its system user: the answer
#: never crosses the link)
LEAFZ_SUBJECT = "$SYS.REQ.SERVER.PING.LEAFZ"


def account_connection_events(account: str) -> tuple[str, str]:
    """A server's advisories on its system account when a connection bound to ``account``
    opens or closes (``client_connect`` / ``client_disconnect``; leaf connections included,
    with ``client.kind`` ``Leafnode``)."""
    return f"$SYS.ACCOUNT.{account}.CONNECT", f"$SYS.ACCOUNT.{account}.DISCONNECT"

CONSUMER_CLOUDHUB = "cloudhub"
CONSUMER_METAMANAGER = "metamanager"
#: edge: metamanager's copy of the node's own pod status, read from the outbox
CONSUMER_METAMANAGER_STATUS = "metamanager-status"
CONSUMER_EDGEHUB_FORWARD = "edgehub-forward"


def cluster_ip_key(ip: str) -> str:
    """KV key of an allocated cluster IP (``ipv4.10-96-0-10``)."""
    return "ipv4." + ip.replace(".", "-")


def kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


# ---------------------------------------------------------------------------------------
# Object keys
# ---------------------------------------------------------------------------------------


def object_key(resource: str, namespace: str | None, name: str) -> str:
    """KV key of an API object: ``<resource>.<ns>.<name>`` (tokens encoded)."""
    return f"{resource}.{encode_ns(namespace)}.{encode_name(name)}"


def object_key_filter(resource: str, namespace: str | None = None) -> str:
    """KV key filter for every object of a resource (optionally in one namespace)."""
    if namespace is None:
        return f"{resource}.*.*"
    return f"{resource}.{encode_ns(namespace)}.*"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    resource: str
    namespace: str | None
    name: str

    @property
    def key(self) -> str:
        return object_key(self.resource, self.namespace, self.name)

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.resource}/{ns}{self.name}"


def parse_object_key(key: str) -> ObjectRef:
    parts = key.split(".")
    if len(parts) != 3:
        raise InvalidName(f"{key!r} is not an object key")
    return ObjectRef(parts[0], decode_ns(parts[1]), decode_name(parts[2]))


def kv_subject(bucket: str, key: str) -> str:
    return f"$KV.{bucket}.{key}"


def kv_subject_prefix(bucket: str) -> str:
    return f"$KV.{bucket}."


# ---------------------------------------------------------------------------------------
# Subjects
# ---------------------------------------------------------------------------------------


def down_subject(node: str, resource: str, namespace: str | None, name: str) -> str:
    """Desired state of one object for one node (``STREAM_DOWN``, latest wins)."""
    return f"{PREFIX}.down.{encode_token(node)}.{object_key(resource, namespace, name)}"


def down_filter(node: str | None = None) -> str:
    if node is None:
        return f"{PREFIX}.down.>"
    return f"{PREFIX}.down.{encode_token(node)}.>"


def down_fence_subject(role: str) -> str:
    """The fence of the leader of ``role`` in ``STREAM_DOWN`` (its epoch; see
    :mod:`edgebus.bus.lease`): ``edgebus.down._fence.<role>``. ``_fence`` is no node's token
    (DNS-1123 names do not start with ``_``), so no edge sources it."""
    return f"{PREFIX}.down._fence.{encode_token(role)}"


def parse_down_subject(subject: str) -> tuple[str, ObjectRef]:
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != PREFIX or parts[1] != "down":
        raise InvalidName(f"{subject!r} is not a downstream subject")
    return decode_token(parts[2]), parse_object_key(".".join(parts[3:]))


# Upstream kinds (the token after the node in outbox / up subjects).
UP_HEARTBEAT = "heartbeat"
UP_STATUS = "status"
UP_EVENT = "event"


def outbox_subject(node: str, kind: str, ref: ObjectRef | None = None) -> str:
    """Where edge services publish upstream messages (``STREAM_EDGE_UP``, edge-local)."""
    tail = f".{ref.key}" if ref is not None else ""
    return f"{PREFIX}.outbox.{encode_token(node)}.{kind}{tail}"


def outbox_filter(node: str) -> str:
    return f"{PREFIX}.outbox.{encode_token(node)}.>"


def outbox_status_filter(node: str, resource: str) -> str:
    """A node's outgoing status reports of one resource: ``edgebus.outbox.<node>.status.<resource>.>``."""
    return f"{PREFIX}.outbox.{encode_token(node)}.{UP_STATUS}.{resource}.>"


def up_subject_from_outbox(outbox: str) -> str:
    """The cloud subject an outbox message is forwarded to (``outbox`` -> ``up``)."""
    parts = outbox.split(".", 2)
    if len(parts) != 3 or parts[0] != PREFIX or parts[1] != "outbox":
        raise InvalidName(f"{outbox!r} is not an outbox subject")
    return f"{PREFIX}.up.{parts[2]}"


#: the kind token of a node's forwarding cursor (``edgebus.up.<node>.cursor.outbox``)
UP_CURSOR = "cursor"


def up_cursor_subject(node: str) -> str:
    """The record of how far a node's outbox is in ``STREAM_UP``: one message (rolled up,
    never expiring) stored atomically with each forwarded message. Five tokens, so no
    consumer filter of upstream kinds (``edgebus.up.*.*``, ``edgebus.up.*.<kind>.<resource>.>``)
    matches it."""
    return f"{PREFIX}.up.{encode_token(node)}.{UP_CURSOR}.outbox"


def up_subject(node: str, kind: str, ref: ObjectRef | None = None) -> str:
    tail = f".{ref.key}" if ref is not None else ""
    return f"{PREFIX}.up.{encode_token(node)}.{kind}{tail}"


def up_filter(node: str | None = None) -> str:
    if node is None:
        return f"{PREFIX}.up.>"
    return f"{PREFIX}.up.{encode_token(node)}.>"


@dataclass(frozen=True, slots=True)
class UpSubject:
    node: str
    kind: str
    ref: ObjectRef | None


def parse_up_subject(subject: str) -> UpSubject:
    parts = subject.split(".")
    if len(parts) < 4 or parts[0] != PREFIX or parts[1] != "up":
        raise InvalidName(f"{subject!r} is not an upstream subject")
    node = decode_token(parts[2])
    kind = parts[3]
    ref = parse_object_key(".".join(parts[4:])) if len(parts) > 4 else None
    return UpSubject(node, kind, ref)


def meta_subject(node: str, op: str) -> str:
    """Request/reply API of a node's metamanager (``list``, ``get``, ``stats``)."""
    return f"{PREFIX}.node.{encode_token(node)}.meta.{op}"


def meta_events_subject(node: str, resource: str | None = None) -> str:
    """Change events a node's metamanager publishes after each LMDB commit."""
    return f"{PREFIX}.node.{encode_token(node)}.meta.events.{resource or '*'}"


def link_subject(node: str) -> str:
    """Cloud-link state changes published by a node's edgehub."""
    return f"{PREFIX}.node.{encode_token(node)}.link"


def edgehub_subject(node: str, op: str) -> str:
    """Request/reply API of a node's edgehub (``state``)."""
    return f"{PREFIX}.node.{encode_token(node)}.edgehub.{op}"


def edged_subject(node: str, op: str) -> str:
    """Request/reply API of a node's edged (``logs``, ``exec``, ``images.load``, ``state``)."""
    return f"{PREFIX}.node.{encode_token(node)}.edged.{op}"


def edged_stream_subject(node: str, stream_id: str) -> str:
    """Where the cloud sends the frames of one exec/attach stream to a node's edged (under the
    node's own subjects; the node answers on a reply subject of its own)."""
    return f"{PREFIX}.node.{encode_token(node)}.edged.stream.{encode_token(stream_id)}"


def mesh_subject(node: str, op: str) -> str:
    """Request/reply API of a node's edgemesh for the node and the cloud: ``state`` (its
    service table)."""
    return f"{PREFIX}.node.{encode_token(node)}.mesh.{op}"


# Between edge nodes, edgemesh subjects name both ends: ``edgebus.mesh.<to>.<from>...``. A
# node may publish only where it is ``<from>`` and receive only where it is ``<to>``, so the
# receiver knows which node sent a frame, and no third node sees it.


def mesh_open_subject(to: str, frm: str) -> str:
    """Where node ``frm`` asks node ``to`` to open a tunnel to one of its endpoints."""
    return f"{PREFIX}.mesh.{encode_token(to)}.{encode_token(frm)}.open"


def mesh_open_filter(to: str) -> str:
    return f"{PREFIX}.mesh.{encode_token(to)}.*.open"


def mesh_tunnel_subject(to: str, frm: str, tunnel: str) -> str:
    """Where node ``to`` receives the frames node ``frm`` sends in one tunnel (core NATS,
    flow-controlled by window acks): ``edgebus.mesh.<to>.<from>.t.<tunnel>``."""
    if not _TOKEN.fullmatch(tunnel):
        raise InvalidName(f"{tunnel!r} is not a tunnel id")
    return f"{PREFIX}.mesh.{encode_token(to)}.{encode_token(frm)}.t.{tunnel}"


def mesh_reply_subject(to: str, frm: str, tunnel: str) -> str:
    """Where node ``to`` receives node ``frm``'s answer to its open request for ``tunnel``."""
    if not _TOKEN.fullmatch(tunnel):
        raise InvalidName(f"{tunnel!r} is not a tunnel id")
    return f"{PREFIX}.mesh.{encode_token(to)}.{encode_token(frm)}.r.{tunnel}"


def mesh_tunnel_filter(to: str) -> str:
    return f"{PREFIX}.mesh.{encode_token(to)}.*.t.*"


def parse_mesh_tunnel_subject(subject: str) -> tuple[str, str, str]:
    """``(to, from, tunnel)`` of a tunnel subject."""
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != PREFIX or parts[1] != "mesh" or parts[4] != "t" or not _TOKEN.fullmatch(parts[5]):
        raise InvalidName(f"{subject!r} is not a tunnel subject")
    return decode_token(parts[2]), decode_token(parts[3]), parts[5]


def parse_mesh_open_subject(subject: str) -> tuple[str, str]:
    """``(to, from)`` of an open request's subject."""
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != PREFIX or parts[1] != "mesh" or parts[4] != "open":
        raise InvalidName(f"{subject!r} is not a tunnel-open subject")
    return decode_token(parts[2]), decode_token(parts[3])


def mesh_to_filter(node: str) -> str:
    """Everything edgemesh peers send to ``node``."""
    return f"{PREFIX}.mesh.{encode_token(node)}.*.>"


def mesh_from_filter(node: str) -> str:
    """Everything ``node`` sends to edgemesh peers."""
    return f"{PREFIX}.mesh.*.{encode_token(node)}.>"


#: cloud Object Store bucket carrying image archives to nodes (``edgebus image load``)
BUCKET_IMAGES = "edgebus-images"

#: node join and credential renewal over HTTPS, relayed by the apiserver to cloudhub (only
#: cloud services may publish or subscribe here)
JOIN_SUBJECT = f"{PREFIX}.hub.join"
RENEW_SUBJECT = f"{PREFIX}.hub.renew"


def api_node_subject(node: str) -> str:
    """The apiserver's API over NATS for one node: an HTTP request in, the HTTP response
    out (the node's metaserver forwards writes through it). The apiserver answers as the
    node the subject names (``system:node:<node>``), so only that node may publish here."""
    return f"{PREFIX}.api.node.{encode_token(node)}"


#: what the apiserver subscribes to (queue group): every node's API subject
API_NODE_FILTER = f"{PREFIX}.api.node.*"


def parse_api_node_subject(subject: str) -> str:
    parts = subject.split(".")
    if len(parts) != 4 or parts[:3] != [PREFIX, "api", "node"]:
        raise InvalidName(f"{subject!r} is not a node API subject")
    return decode_token(parts[3])


def hub_node_subject(node: str, op: str) -> str:
    """A node's own requests to cloudhub (``renew``): ``edgebus.hub.node.<node>.<op>``. Only
    the node's credential may publish here, so the subject names who is asking."""
    return f"{PREFIX}.hub.node.{encode_token(node)}.{op}"


def hub_node_filter(node: str = "*") -> str:
    return f"{PREFIX}.hub.node.{node if node == '*' else encode_token(node)}.>"


def parse_hub_node_subject(subject: str) -> tuple[str, str]:
    parts = subject.split(".")
    if len(parts) != 5 or parts[:3] != [PREFIX, "hub", "node"]:
        raise InvalidName(f"{subject!r} is not a node's cloudhub subject")
    return decode_token(parts[3]), parts[4]


def addressed_node(subject: str) -> str | None:
    """The node a ``edgebus.node.<node>...`` subject is addressed to (None for any other)."""
    parts = subject.split(".", 3)
    if len(parts) < 4 or parts[0] != PREFIX or parts[1] != "node":
        return None
    try:
        return decode_token(parts[2])
    except InvalidName:
        return None


def node_filter(node: str) -> str:
    """Everything addressed to a node's services: ``edgebus.node.<node>.>``."""
    return f"{PREFIX}.node.{encode_token(node)}.>"


def reply_prefix(node: str) -> str:
    """Where the cloud receives answers (and streams) from one node: requests addressed to a
    node carry a reply subject under ``edgebus.reply.<node>.``, the only replies it may send."""
    return f"{PREFIX}.reply.{encode_token(node)}"


def reply_filter(node: str) -> str:
    return f"{reply_prefix(node)}.>"


def inbox_prefix(node: str) -> str:
    """The inbox prefix of every client of a node's server: ``edgebus.inbox.<node>``."""
    return f"{PREFIX}.inbox.{encode_token(node)}"


def inbox_filter(node: str) -> str:
    return f"{inbox_prefix(node)}.>"


def mapper_inbox_prefix(node: str) -> str:
    """The inbox prefix of a node's mappers (apart from its services')."""
    return f"{inbox_prefix(node)}.mapper"


def down_consumer(node: str) -> str:
    """The durable pull consumer on ``STREAM_DOWN`` a node's edgehub reads its desired state
    from: named by the node's token (made once, when the node joins or at its first link)."""
    return encode_token(node)


def deliver_prefix(node: str) -> str:
    """The deliver-subject prefix of a node's downstream source consumer."""
    return f"{PREFIX}.deliver.{encode_token(node)}"


def deliver_filter(node: str) -> str:
    return f"{deliver_prefix(node)}.>"


def dlq_subject(domain: str, service: str) -> str:
    """Where a service of JetStream domain ``domain`` (``cloud`` or a node's) stores what it
    rejected: ``edgebus.dlq.<domain>.<service>``. Only that domain's ``STREAM_DLQ``
    captures it, so a reject is stored once, where it happened."""
    if not _TOKEN.fullmatch(domain):
        raise InvalidName(f"{domain!r} is not a JetStream domain")
    return f"{PREFIX}.dlq.{domain}.{encode_token(service)}"


def dlq_filter(domain: str) -> str:
    """The subjects of one domain's dead-letter stream."""
    if not _TOKEN.fullmatch(domain):
        raise InvalidName(f"{domain!r} is not a JetStream domain")
    return f"{PREFIX}.dlq.{domain}.>"


#: every domain's dead letters (for readers; each stream holds its own domain's only)
DLQ_FILTER = f"{PREFIX}.dlq.>"

# Queue groups (pool delivery: one instance of a service handles each message).
def queue_group(service: str) -> str:
    return f"{PREFIX}-{service}"


# ---------------------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------------------

#: the prefix of the headers NATS itself reads and sets (never carried over to another stream)
HDR_NATS_PREFIX = "Nats-"
HDR_MSG_ID = "Nats-Msg-Id"
HDR_EXPECTED_STREAM = "Nats-Expected-Stream"
#: the time JetStream stored a message (on a direct get)
HDR_TIME_STAMP = "Nats-Time-Stamp"
HDR_EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
#: names the subject whose last sequence ``Nats-Expected-Last-Subject-Sequence`` checks
HDR_EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
HDR_KV_OP = "KV-Operation"
#: JetStream per-message TTL (``30s``, ``1h``; ``never``: exempt from the stream's max age,
#: NATS 2.11+); the stream must allow message TTLs
HDR_TTL = "Nats-TTL"
#: set by the server on the delete marker it leaves when an entry expires
HDR_MARKER_REASON = "Nats-Marker-Reason"
HDR_OP = "Edgebus-Op"
HDR_RESOURCE = "Edgebus-Resource"
HDR_RV = "Edgebus-Rv"
HDR_SYNC = "Edgebus-Sync"
HDR_SOURCE = "Edgebus-Source"
HDR_PARENT = "Edgebus-Parent"
HDR_HASH = "Edgebus-Hash"
#: the outbox sequence of a message edgehub forwarded (for the resume point after a cut)
HDR_UP_SEQ = "Edgebus-Up-Seq"
#: the outbox stream's identity (its creation time): a wiped and re-created outbox is never
#: mistaken for the old one
HDR_UP_EPOCH = "Edgebus-Up-Epoch"
#: on a node's copy of a desired-state message: its sequence in the cloud's ``STREAM_DOWN``
HDR_DOWN_SEQ = "Edgebus-Down-Seq"

#: ``sub``: the message replaces the earlier ones of its subject
HDR_ROLLUP = "Nats-Rollup"
HDR_BATCH_ID = "Nats-Batch-Id"
HDR_BATCH_SEQ = "Nats-Batch-Sequence"
HDR_BATCH_COMMIT = "Nats-Batch-Commit"
#: the cloud's own headers on its copy of a desired-state message (JetStream's bookkeeping:
#: expectations, id, source, rollup, TTL), never carried into a node's copy (prefixes)
HDR_CLOUD_OWN = ("Nats-Expected", HDR_MSG_ID, "Nats-Stream-Source", HDR_ROLLUP, HDR_TTL)
HDR_ERROR = "Edgebus-Error"
#: a lease's epoch, on a fenced write and on its fence record (edgebus/bus/lease.py)
HDR_LEASE_EPOCH = "Edgebus-Lease-Epoch"
#: a dead letter's origin and payload (edgebus/bus/deadletter.py; the reason is HDR_ERROR)
HDR_DLQ_SUBJECT = "Edgebus-Subject"
HDR_DLQ_ROUTE = "Edgebus-Route"
HDR_DLQ_STREAM_SEQ = "Edgebus-Stream-Seq"
HDR_DLQ_PAYLOAD_BYTES = "Edgebus-Payload-Bytes"
HDR_DLQ_PAYLOAD_SHA256 = "Edgebus-Payload-Sha256"
HDR_DLQ_TRUNCATED = "Edgebus-Truncated"
CONTENT_TYPE = "Content-Type"
MSGPACK = "application/msgpack"


# ---------------------------------------------------------------------------------------
# Devices: upstream subjects, and KubeEdge's MQTT topics as NATS subjects
# ---------------------------------------------------------------------------------------

CONSUMER_DEVICECONTROLLER = "devicecontroller"


def up_kind_filter(kind: str, resource: str | None = None) -> str:
    """Every node's upstream messages of one kind (and resource): ``edgebus.up.*.<kind>[.<resource>.>]``."""
    if resource is None:
        return f"{PREFIX}.up.*.{kind}"
    return f"{PREFIX}.up.*.{kind}.{resource}.>"


#: KubeEdge's topic root. nats-server's MQTT listener maps topic levels to subject tokens
#: (``/`` <-> ``.``) and a ``.`` inside a level to ``//``.
HW_ROOT = "$hw.events"
HW_TWIN_UPDATE = "twin.update"
HW_TWIN_DELTA = "twin.update.delta"
HW_TWIN_RESULT = "twin.update.result"
HW_TWIN_DOCUMENT = "twin.update.document"
HW_TWIN_GET = "twin.get"
HW_TWIN_GET_RESULT = "twin.get.result"
HW_STATE_UPDATE = "state.update"
HW_STATE_RESULT = "state.update.result"
HW_MEMBERSHIP_GET = "membership.get"
HW_MEMBERSHIP_RESULT = "membership.get.result"
HW_MEMBERSHIP_UPDATED = "membership.updated"


def mqtt_level(name: str) -> str:
    """One MQTT topic level as nats-server's MQTT listener spells it in a subject."""
    return name.replace(".", "//")


def mqtt_topic_to_subject(topic: str) -> str:
    """``$hw/events/device/ns/a.b/twin/update`` -> ``$hw.events.device.ns.a//b.twin.update``."""
    return ".".join(mqtt_level(level) for level in topic.split("/"))


def subject_to_mqtt_topic(subject: str) -> str:
    return "/".join(tok.replace("//", ".") for tok in subject.replace("//", "\x00").split(".")).replace("\x00", ".")


def hw_device_subject(namespace: str, name: str, suffix: str) -> str:
    """``$hw.events.device.<ns>.<name>.<suffix>`` (KubeEdge v1.15+ topics carry the namespace)."""
    if not is_dns1123_subdomain(namespace) or not is_dns1123_subdomain(name):
        raise InvalidName(f"{namespace}/{name} is not a namespace/name pair")
    return f"{HW_ROOT}.device.{mqtt_level(namespace)}.{mqtt_level(name)}.{suffix}"


def hw_device_filter(suffix: str) -> str:
    return f"{HW_ROOT}.device.*.*.{suffix}"


def parse_hw_device_subject(subject: str) -> tuple[str, str, str]:
    """``(namespace, name, suffix)`` of a ``$hw.events.device...`` subject."""
    parts = subject.split(".")
    if len(parts) < 6 or ".".join(parts[:3]) != f"{HW_ROOT}.device":
        raise InvalidName(f"{subject!r} is not a device topic")
    ns, name = parts[3].replace("//", "."), parts[4].replace("//", ".")
    if not is_dns1123_subdomain(ns) or not is_dns1123_subdomain(name):
        raise InvalidName(f"{subject!r} does not name a namespace and a device")
    return ns, name, ".".join(parts[5:])


def hw_node_subject(node: str, suffix: str) -> str:
    """``$hw.events.node.<node>.<suffix>`` (membership)."""
    if not is_dns1123_subdomain(node):
        raise InvalidName(f"{node!r} is not a node name")
    return f"{HW_ROOT}.node.{mqtt_level(node)}.{suffix}"


def devicetwin_subject(node: str, op: str) -> str:
    """Request/reply API of a node's devicetwin (``twins``, ``events``)."""
    return f"{PREFIX}.node.{encode_token(node)}.devicetwin.{op}"


#: Node annotation: the node's outbox backlog as edgehub last reported it (JSON: messages,
#: bytes, oldestSeconds, reportedAt), kept while the node is offline
ANN_OUTBOX_BACKLOG = "edgebus.io/outbox-backlog"
#: the envelope source of edgehub's backlog reports (its own staleness, apart from the node status)
OUTBOX_REPORTER = "edgehub-outbox"
