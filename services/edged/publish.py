"""Status reports into the node's outbox (``EDGEBUS_EDGE_UP``, edge-local: works offline).

edgehub forwards the outbox to the cloud exactly once, in order; cloudhub applies a report
only if it is newer than the one the object reflects (latest wins, per reporter).

* pod status: ``edgebus.outbox.<node>.status.pods.<ns>.<name>`` with
  ``{time, uid, status}``; ``deleted: true`` confirms that the pod's containers, sandbox and
  directories are gone, so cloudhub may remove the pod.
* resource usage: ``edgebus.outbox.<node>.status.metrics._.<node>`` (:mod:`services.edged.metrics`).
* node status: ``edgebus.outbox.<node>.status.nodes._.<node>`` with ``{time, status}``
  (runtime facts and conditions; edgehub reports the rest), envelope source ``edged``.
"""

from __future__ import annotations

import logging
from typing import Any

from edgebus import clock, names
from edgebus.bus import Bus, BusError
from edgebus.envelope import OP_DELETE, OP_UPDATE, Envelope
from edgebus.names import ObjectRef

log = logging.getLogger("edgebus.edged")

SOURCE = "edged"


class Publisher:
    def __init__(self, bus: Bus, node: str) -> None:
        self.bus = bus
        self.node = node

    async def _publish(self, ref: ObjectRef, op: str, content: dict[str, Any]) -> bool:
        env = Envelope.new(source=SOURCE, operation=op, resource=ref.resource, content=content)
        try:
            await self.bus.js_publish(names.outbox_subject(self.node, names.UP_STATUS, ref), env, stream=names.STREAM_EDGE_UP)
            return True
        except BusError as exc:
            log.warning("status of %s not stored in the outbox: %s", ref, exc)
            return False

    async def pod(self, namespace: str, name: str, uid: str, status: dict[str, Any], *, deleted: bool = False) -> bool:
        content: dict[str, Any] = {"time": clock.now_ns(), "uid": uid, "status": status}
        if deleted:
            content["deleted"] = True
        return await self._publish(ObjectRef("pods", namespace, name), OP_DELETE if deleted else OP_UPDATE, content)

    async def metrics(self, report: dict[str, Any]) -> bool:
        """Resource usage of the node and its pods (``kubectl top``); the cloud keeps the latest."""
        return await self._publish(ObjectRef(names.METRICS_RESOURCE, None, self.node), OP_UPDATE, report)

    async def node_status(self, status: dict[str, Any]) -> bool:
        return await self._publish(ObjectRef("nodes", None, self.node), OP_UPDATE, {"time": clock.now_ns(), "status": status})
