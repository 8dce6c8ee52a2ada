"""The reconcile loop of endpointcontroller: every Service's Endpoints equal to its ready pods.

Level-triggered: it lists Services, pods and Endpoints from the objects bucket (then
follows it), and after the initial list reconciles every Service; afterwards each change
reconciles only the Services it may affect. Writes are compare-and-set through the object
store, so a concurrent writer costs a retry, never a lost update. Endpoints it wrote carry
``edgebus.io/managed-by: endpointcontroller``; it deletes only those.

With several replicas, one holds the ``endpointcontroller`` lease and writes; the others
stand by.
"""

from __future__ import annotations

import logging
from contextlib import aclosing

from prometheus_client import Counter, Gauge

from edgebus.errors import AlreadyExists, Conflict, Invalid, NotFound
from edgebus.objects import ENDPOINTS, PODS, SERVICES
from edgebus.objectstore import BOOKMARK, DELETED, ObjectStore
from services.endpointcontroller import logic

log = logging.getLogger("edgebus.endpointcontroller")

WRITES = Counter("edgebus_endpoints_writes_total", "Endpoints written by the endpointcontroller", ["op"])
SERVICES_G = Gauge("edgebus_endpointcontroller_services", "Services the endpointcontroller follows")


class Controller:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.index = logic.Index()
        self.synced = False

    async def run(self) -> None:
        self.synced = False
        self.index = logic.Index()
        async with aclosing(self.store.watch([SERVICES, PODS, ENDPOINTS], bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    for key in sorted(self.index.all()):
                        await self.reconcile(key)
                    self.synced = True
                    log.info("initial sync done: %d services", len(self.index.services))
                    continue
                affected = self.index.apply(ev.resource.plural, ev.object, deleted=ev.type == DELETED)
                SERVICES_G.set(len(self.index.services))
                if self.synced:
                    for key in sorted(affected):
                        await self.reconcile(key)

    async def reconcile(self, key: logic.NsName) -> None:
        action = self.index.reconcile(key)
        if action is None:
            return
        ns, name = key
        try:
            if action.op == logic.DELETE:
                await self.store.delete(ENDPOINTS, ns, name)
            elif action.op == logic.CREATE:
                assert action.endpoints is not None
                await self.store.create(ENDPOINTS, action.endpoints, namespace=ns)
            else:
                want = action.endpoints
                assert want is not None

                def put(cur: dict[str, object]) -> dict[str, object] | None:
                    if logic.same(cur, want):
                        return None
                    md = dict(cur.get("metadata") or {})  # type: ignore[call-overload]
                    md["annotations"] = {**(md.get("annotations") or {}), **want["metadata"]["annotations"]}
                    if want["metadata"].get("labels"):
                        md["labels"] = want["metadata"]["labels"]
                    else:
                        md.pop("labels", None)
                    return {**cur, "metadata": md, "subsets": want["subsets"]}

                await self.store.mutate(ENDPOINTS, ns, name, put)
            WRITES.labels(action.op).inc()
            log.info("%s endpoints %s/%s", action.op, ns, name)
        except (NotFound, AlreadyExists, Conflict) as exc:
            # the watch will bring the state that made this stale; reconcile again then
            log.info("endpoints %s/%s: %s (will follow the change)", ns, name, exc)
        except Invalid as exc:
            log.warning("endpoints %s/%s rejected: %s", ns, name, exc)
