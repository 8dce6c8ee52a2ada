"""The streams of the edgebus mesh, defined once, ensured idempotently by every service
that uses them (so start order never matters).

Cloud (domain ``cloud``):

* ``EDGEBUS_DOWN`` - desired state, subjects ``edgebus.down.<node>.<resource>.<ns>.<name>``,
  **one message per subject** (latest version wins; a delete is a tombstone message).
* ``EDGEBUS_UP`` - everything edges send up, subjects ``edgebus.up.<node>.>``, written only
  by each node's edgehub forwarder, de-duplicated by ``Nats-Msg-Id``.

Edge (the node's own domain):

* ``EDGEBUS_EDGE_DOWN`` - sources ``EDGEBUS_DOWN`` filtered to this node across domains;
  one message per subject, so while the node is offline several updates of an object
  collapse into the latest one, on both sides of the link.
* ``EDGEBUS_EDGE_UP`` - the outbox, subjects ``edgebus.outbox.<node>.>``: local services
  publish here, always locally (it works offline); edgehub forwards it to ``EDGEBUS_UP``.

Edge-local and cloud streams never capture the same subjects (``outbox`` vs ``up``).
"""

from __future__ import annotations

from edgebus import names
from edgebus.bus import Bus, SourceSpec, StreamSpec, ensure_stream

DAY = 24 * 3600.0


def cloud_down(replicas: int = 1) -> StreamSpec:
    return StreamSpec(
        name=names.STREAM_DOWN,
        subjects=(names.down_filter(),),
        description="Desired state per node and object; latest version only",
        max_msgs_per_subject=1,
        replicas=replicas,
    )


def cloud_up(replicas: int = 1, max_age: float = 7 * DAY, duplicate_window: float = 600.0) -> StreamSpec:
    return StreamSpec(
        name=names.STREAM_UP,
        subjects=(names.up_filter(),),
        description="Heartbeats, status and events from edge nodes, forwarded exactly once",
        max_age=max_age,
        duplicate_window=duplicate_window,
        replicas=replicas,
    )


def edge_down(node: str, cloud_domain: str = names.CLOUD_DOMAIN) -> StreamSpec:
    return StreamSpec(
        name=names.STREAM_EDGE_DOWN,
        description=f"Desired state of node {node}, sourced from the cloud; latest version only",
        max_msgs_per_subject=1,
        sources=(SourceSpec(names.STREAM_DOWN, names.down_filter(node), cloud_domain, deliver_prefix=names.deliver_prefix(node)),),
    )


def edge_up(node: str, max_bytes: int = 256 << 20, max_age: float = 30 * DAY) -> StreamSpec:
    return StreamSpec(
        name=names.STREAM_EDGE_UP,
        subjects=(names.outbox_filter(node),),
        description=f"Outbox of node {node}: kept while offline, forwarded by edgehub",
        max_bytes=max_bytes,
        max_age=max_age,
    )


async def ensure_cloud_streams(bus: Bus, *, replicas: int = 1) -> None:
    await ensure_stream(bus, cloud_down(replicas))
    await ensure_stream(bus, cloud_up(replicas))


async def ensure_edge_streams(bus: Bus, node: str, cloud_domain: str = names.CLOUD_DOMAIN) -> None:
    await ensure_stream(bus, edge_up(node))
    await ensure_stream(bus, edge_down(node, cloud_domain))
