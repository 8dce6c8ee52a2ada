"""edgecontroller: routes each node's desired state onto its downstream subjects.

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
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import aclosing

from prometheus_client import Counter, Gauge

from edgebus import names, topology
from edgebus.bus import Backoff, Bus, BusError, CaughtUp, read_stream
from edgebus.envelope import OP_DELETE, OP_UPDATE, Envelope
from edgebus.errors import RetryLater
from edgebus.names import ObjectRef
from edgebus.objects import RESOURCES
from edgebus.objectstore import BOOKMARK, DELETED, ObjectStore
from edgebus.runtime import Service, setup_logging
from services.edgecontroller import logic
from services.edgecontroller.config import Settings

log = logging.getLogger("edgebus.edgecontroller")

SENT = Counter("edgebus_downstream_sent_total", "Desired-state messages put on EDGEBUS_DOWN", ["resource", "op"])
NODES = Gauge("edgebus_edgecontroller_nodes", "Nodes with desired state")

#: downstream publishes awaiting their acknowledgement at once
WINDOW = 256


class Controller:
    def __init__(self, bus: Bus, store: ObjectStore) -> None:
        self.bus = bus
        self.store = store
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
                await self.bus.js_publish(subject, env, headers={names.HDR_HASH: a.hash}, stream=names.STREAM_DOWN)
                SENT.labels(a.ref.resource, env.route.operation).inc()
                log.debug("sent %s %s to %s (seq %d)", env.route.operation, a.ref, a.node, seq)
                return
            except (BusError, RetryLater) as exc:
                if attempt == 7:
                    raise
                log.info("publish %s failed (%s); retrying", subject, exc)
                await asyncio.sleep(backoff.next())


class Window:
    """Publishes in flight, at most ``size`` (their acks are awaited together, so a burst of
    changes is not one round trip per message). A subject's next publish starts only after
    its previous one is acknowledged: per-subject order - latest wins - is kept. A publish
    that fails for good surfaces from :meth:`failure` (and from the next :meth:`submit`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.by_subject: dict[str, asyncio.Task[None]] = {}
        self.order: deque[asyncio.Task[None]] = deque()
        self._error: BaseException | None = None
        self._failed = asyncio.Event()

    async def submit(self, subject: str, send: Callable[[], Awaitable[None]]) -> None:
        prev = self.by_subject.get(subject)
        if prev is not None:
            await prev
        while len(self.order) >= self.size:
            await self.order.popleft()
        if self._error is not None:
            raise self._error
        t = asyncio.create_task(send())
        self.by_subject[subject] = t
        self.order.append(t)
        t.add_done_callback(functools.partial(self._done, subject))

    def _done(self, subject: str, t: asyncio.Task[None]) -> None:
        if self.by_subject.get(subject) is t:
            del self.by_subject[subject]
        while self.order and self.order[0].done() and (self.order[0].cancelled() or self.order[0].exception() is None):
            self.order.popleft()
        if not t.cancelled() and t.exception() is not None and self._error is None:
            self._error = t.exception()
            self._failed.set()

    async def drain(self) -> None:
        while self.order:
            await self.order.popleft()

    async def failure(self) -> None:
        await self._failed.wait()
        assert self._error is not None
        raise self._error

    def cancel(self) -> None:
        for t in self.order:
            t.cancel()
        self.order.clear()
        self.by_subject.clear()


def build(settings: Settings | None = None) -> Service[Controller]:
    settings = settings or Settings()
    svc: Service[Controller] = Service("edgecontroller", settings)
    store = ObjectStore(svc.bus, replicas=settings.edgecontroller.kv_replicas)
    ctl = Controller(svc.bus, store)
    svc.ctx = ctl

    @svc.on_start
    async def ensure(s: Service[Controller]) -> None:
        await store.ensure()
        await topology.ensure_cloud_streams(s.bus, replicas=settings.edgecontroller.stream_replicas)

    # One replica routes at a time (the holder of the "edgecontroller" lease); the others
    # stand by and take over within lease_ttl when it dies. A crash (e.g. the cloud server
    # restarting mid-publish) restarts the loop, which re-reads the downstream state and
    # resumes with only the difference - exactly what a new leader does too.
    svc.lead("edgecontroller", ctl.run, ttl=settings.edgecontroller.lease_ttl, synced=lambda: ctl.synced)
    return svc


def main() -> None:
    from edgebus.runtime import main as run

    settings = Settings()
    setup_logging("edgecontroller", settings)
    run(lambda: build(settings))
