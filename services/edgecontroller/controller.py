"""The routing loop of edgecontroller: each node's desired state onto its downstream subjects.

Level-triggered. On start it reads what ``EDGEBUS_DOWN`` already holds for every node
(one message per object), lists the objects, and sends only the difference: a restart
(of this service or of the cloud server) never re-sends everything. Then it follows the
objects bucket and, for every change, recomputes the nodes it affects.

With several replicas, one holds the ``edgecontroller`` lease and routes; the others stand by.

Every message carries a *sync version* (``seq``): the objects-bucket revision of the
change that caused it. It only grows per node and object, which lets metamanager apply
each message exactly once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from contextlib import aclosing

from prometheus_client import Counter, Gauge

from edgebus import names
from edgebus.bus import Backoff, Bus, BusError, CaughtUp, WrongRevision, read_stream
from edgebus.bus.lease import Fence, Fenced
from edgebus.envelope import OP_DELETE, OP_UPDATE, Envelope
from edgebus.errors import RetryLater
from edgebus.names import ObjectRef
from edgebus.objects import RESOURCES
from edgebus.objectstore import BOOKMARK, DELETED, ObjectStore
from services.edgecontroller import logic
from services.edgecontroller.window import Window

log = logging.getLogger("edgebus.edgecontroller")

SENT = Counter("edgebus_downstream_sent_total", "Desired-state messages put on EDGEBUS_DOWN", ["resource", "op"])
NODES = Gauge("edgebus_edgecontroller_nodes", "Nodes with desired state")
#: seconds between updates of the node gauge
GAUGE_EVERY = 5.0

#: downstream publishes awaiting their acknowledgement at once
WINDOW = 256


class Controller:
    def __init__(self, bus: Bus, store: ObjectStore) -> None:
        self.bus = bus
        self.store = store
        #: the leader's fence in EDGEBUS_DOWN: a write of an earlier leader is refused
        self.fence: Fence | None = None
        self.sent: dict[str, dict[ObjectRef, logic.Sent]] = {}
        self.index = logic.Index()
        self.synced = False
        self.window = Window(WINDOW)

    async def load_sent(self) -> None:
        """What EDGEBUS_DOWN holds: the last message of every node/object subject."""
        sent: dict[str, dict[ObjectRef, logic.Sent]] = {}
        async with aclosing(
            read_stream(self.bus, names.STREAM_DOWN, names.down_filter(), last_per_subject=True, stop_when_caught_up=True, headers_only=True)
        ) as it:
            async for m in it:
                if isinstance(m, CaughtUp):
                    break
                try:
                    node, ref = names.parse_down_subject(m.subject)
                except names.InvalidName:
                    continue
                deleted = m.headers.get(names.HDR_OP) == OP_DELETE
                sent.setdefault(node, {})[ref] = logic.Sent(m.headers.get(names.HDR_HASH, ""), deleted)
        self.sent = sent
        log.info("downstream holds %d objects for %d nodes", sum(len(v) for v in sent.values()), len(sent))

    async def run(self) -> None:
        self.window = Window(WINDOW)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._follow())
                tg.create_task(self.window.failure())
        except ExceptionGroup as eg:  # a publish that kept failing: start over from the stream
            raise eg.exceptions[0] from None
        finally:
            self.window.cancel()

    async def _follow(self) -> None:
        self.synced = False
        self.index = logic.Index()
        await self.load_sent()
        start_rev = await self.store.kv.last_revision()
        last_gauge = 0.0
        async with aclosing(self.store.watch(list(logic.WATCHED_RESOURCES), bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    seq = max(start_rev, ev.revision, 1)
                    nodes = self.index.nodes() | set(self.sent)
                    for node in sorted(nodes):
                        await self.sync_node(node, seq, None)
                    await self.window.drain()
                    self.synced = True
                    log.info("initial sync done: %d nodes (sync version %d)", len(nodes), seq)
                    continue
                resource = RESOURCES[ev.resource.plural]
                affected = self.index.apply(resource, ev.object, deleted=ev.type == DELETED)
                if self.synced:
                    for node, refs in sorted(affected.items()):
                        await self.sync_node(node, ev.revision, refs)
                now = time.monotonic()
                if now - last_gauge >= GAUGE_EVERY:  # counting is O(nodes): not per event
                    last_gauge = now
                    NODES.set(len(self.index.nodes()))

    async def sync_node(self, node: str, seq: int, refs: set[ObjectRef] | None) -> None:
        sent = self.sent.setdefault(node, {})
        for a in logic.diff(self.index, node, sent, refs):
            subject = names.down_subject(a.node, a.ref.resource, a.ref.namespace, a.ref.name)
            await self.window.submit(subject, functools.partial(self.publish, subject, a, seq))
            sent[a.ref] = logic.Sent(a.hash, a.delete)

    async def publish(self, subject: str, a: logic.Action, seq: int) -> None:
        rv = str(((a.content or {}).get("metadata") or {}).get("resourceVersion", ""))
        content = a.content if not a.delete else {"metadata": {"name": a.ref.name, "namespace": a.ref.namespace}}
        env = Envelope.new(
            source="edgecontroller",
            operation=OP_DELETE if a.delete else OP_UPDATE,
            resource=a.ref.resource,
            content=content,
            resource_version=rv,
            seq=seq,
            id=f"{names.encode_token(a.node)}:{a.ref.key}:{seq}",
        )
        backoff = Backoff(0.1, 2.0)
        for attempt in range(8):
            try:
                headers = {names.HDR_HASH: a.hash, **(self.fence.headers() if self.fence is not None else {})}
                await self.bus.js_publish(subject, env, headers=headers, stream=names.STREAM_DOWN)
                SENT.labels(a.ref.resource, env.route.operation).inc()
                log.debug("sent %s %s to %s (seq %d)", env.route.operation, a.ref, a.node, seq)
                return
            except WrongRevision:
                raise Fenced(f"{subject}: refused, a newer edgecontroller leader holds the fence") from None
            except (BusError, RetryLater) as exc:
                if attempt == 7 or isinstance(exc, Fenced):
                    raise
                log.info("publish %s failed (%s); retrying", subject, exc)
                await asyncio.sleep(backoff.next())
