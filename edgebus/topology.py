"""The streams of the edgebus mesh, defined once, ensured idempotently by every service
that uses them (so start order never matters).

Cloud (domain ``cloud``):

* ``EDGEBUS_DOWN`` - desired state, subjects ``edgebus.down.<node>.<resource>.<ns>.<name>``,
  **one message per subject** (latest version wins; a delete is a tombstone message).
* ``EDGEBUS_UP`` - everything edges send up, subjects ``edgebus.up.<node>.>``, written only
  by each node's edgehub forwarder, de-duplicated by ``Nats-Msg-Id``.

Edge (the node's own domain):

* ``EDGEBUS_EDGE_DOWN`` - this node's copy of ``EDGEBUS_DOWN`` filtered to it: edgehub pulls
  it from the node's durable consumer on ``EDGEBUS_DOWN`` (:func:`down_consumer`, made once,
  when the node joins; a reconnect costs no JetStream API call) and stores each message
  under its own subject, acknowledging it once stored. One message per subject, so while
  the node is offline several updates of an object collapse into the latest one, on both
  sides of the link.
* ``EDGEBUS_EDGE_UP`` - the outbox, subjects ``edgebus.outbox.<node>.>``: local services
  publish here, always locally (it works offline); edgehub forwards it to ``EDGEBUS_UP``.

Edge-local and cloud streams never capture the same subjects (``outbox`` vs ``up``).

Retention (configurable; defaults here, documented in ``docs/architecture.md``): the
outbox keeps 30 days / 256 MiB (edgehub owns it), ``EDGEBUS_UP`` 7 days with a 10-minute
de-duplication window (cloudhub owns it). Every other service that uses one of these
streams only creates it when missing, so two services never fight over its limits.
"""

from __future__ import annotations

from edgebus import names
from edgebus.bus import Bus, DurableSpec, StreamSpec, ensure_stream

DAY = 24 * 3600.0


def cloud_down(replicas: int = 1) -> StreamSpec:
    return StreamSpec(
        name=names.STREAM_DOWN,
        subjects=(names.down_filter(),),
        description="Desired state per node and object; latest version only",
        max_msgs_per_subject=1,
        replicas=replicas,
    )


#: how long the cloud keeps what nodes forwarded (for cloudhub's and devicecontroller's consumers)
UP_MAX_AGE = 7 * DAY
#: ``Nats-Msg-Id`` de-duplication of forwarded messages (a second line behind the cursor)
UP_DUPLICATE_WINDOW = 600.0
#: how long / how much a node keeps in its outbox while its link is down
OUTBOX_MAX_AGE = 30 * DAY
OUTBOX_MAX_BYTES = 256 << 20


def cloud_up(replicas: int = 1, max_age: float = UP_MAX_AGE, duplicate_window: float = UP_DUPLICATE_WINDOW) -> StreamSpec:
    """``EDGEBUS_UP``. Atomic batches, per-message TTLs and roll-ups: each node's forwarding
    cursor (``edgebus.up.<node>.cursor.outbox``) is stored with every forwarded message in
    one batch, replaces the previous cursor and never expires, so the resume point does not
    depend on ``max_age``."""
    return StreamSpec(
        name=names.STREAM_UP,
        subjects=(names.up_filter(),),
        description="Heartbeats, status and events from edge nodes, forwarded exactly once",
        max_age=max_age,
        duplicate_window=min(duplicate_window, max_age) if max_age else duplicate_window,
        replicas=replicas,
        allow_atomic=True,
        allow_msg_ttl=True,
        allow_rollup=True,
    )


def edge_down(node: str) -> StreamSpec:
    """The node's copy of its desired state. Its subjects are the cloud's own for the node:
    the node's permissions on the hub let it neither publish nor receive them, so what is
    stored here locally never crosses the link."""
    return StreamSpec(
        name=names.STREAM_EDGE_DOWN,
        subjects=(names.down_filter(node),),
        description=f"Desired state of node {node}, pulled from the cloud; latest version only",
        max_msgs_per_subject=1,
    )


#: seconds a pull for the node's desired state waits on the hub before it is renewed: an
#: idle link carries one request (and its timeout answer) per this; a message is delivered
#: as soon as it is stored, whatever this is
DOWN_PULL_EXPIRES = 60.0
#: seconds before a message delivered to a node and not acknowledged is delivered again
DOWN_ACK_WAIT = 30.0


def down_consumer(node: str, cloud_domain: str = names.CLOUD_DOMAIN) -> DurableSpec:
    """The node's durable pull consumer on ``EDGEBUS_DOWN`` (no inactivity threshold: it is
    deleted with the node's identity). Its acknowledgement floor is the node's position,
    kept by the cloud across links, reconnects and restarts of either side."""
    return DurableSpec(
        stream=names.STREAM_DOWN,
        durable=names.down_consumer(node),
        filter_subject=names.down_filter(node),
        domain=cloud_domain,
        expires=DOWN_PULL_EXPIRES,
        ack_wait=DOWN_ACK_WAIT,
        max_ack_pending=256,
        batch=64,
    )


def edge_up(node: str, max_bytes: int = OUTBOX_MAX_BYTES, max_age: float = OUTBOX_MAX_AGE) -> StreamSpec:
    return StreamSpec(
        name=names.STREAM_EDGE_UP,
        subjects=(names.outbox_filter(node),),
        description=f"Outbox of node {node}: kept while offline, forwarded by edgehub",
        max_bytes=max_bytes,
        max_age=max_age,
    )


async def ensure_cloud_streams(bus: Bus, *, replicas: int = 1, up: StreamSpec | None = None) -> None:
    """``up``: the owner's ``EDGEBUS_UP`` (its retention is applied); without it the stream
    is only created when missing."""
    await ensure_stream(bus, cloud_down(replicas))
    await ensure_stream(bus, up or cloud_up(replicas), update=up is not None)


async def ensure_edge_streams(bus: Bus, node: str, cloud_domain: str = names.CLOUD_DOMAIN, *, outbox: StreamSpec | None = None) -> None:
    """``outbox``: the owner's outbox (its retention is applied); without it the outbox is
    only created when missing."""
    await ensure_stream(bus, outbox or edge_up(node), update=outbox is not None)
    # updated: a node's copy made by an earlier edgebus sourced the cloud's stream instead
    await ensure_stream(bus, edge_down(node), update=True)
