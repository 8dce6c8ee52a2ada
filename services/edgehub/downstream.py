"""The node's desired state, pulled from its durable consumer on the cloud's ``EDGEBUS_DOWN``.

The consumer (``topology.down_consumer``) is made once: by cloudhub when the node joins, or
here when the cloud has none (asked once per edgehub start, and after a pull that went
unanswered). A reconnection costs no JetStream API call: edgehub only sends pull requests (``CONSUMER.MSG.NEXT``), each waiting
on the cloud for up to ``expires`` seconds, so an idle link carries one request and its
timeout answer per ``expires``. The consumer's acknowledgement floor is the node's
position, kept by the cloud across outages and restarts of either side.

Each message is stored in the node's ``EDGEBUS_EDGE_DOWN`` under its own subject (one
message per subject), with its cloud sequence in ``Edgebus-Down-Seq``, and acknowledged
only once stored: a message is stored at least once, and a redelivered one (an
acknowledgement lost with the link) is skipped when the node already holds it or a newer
version of its subject — so each version is applied exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from edgebus import names, topology
from edgebus.bus import Backoff, Bus, BusError, StreamNotFound, consumer_state, ensure_consumer, get_last

log = logging.getLogger("edgebus.edgehub")

PULLED = Counter("edgebus_downstream_pulled_total", "Desired-state messages pulled from the cloud and stored on the node", ["node"])
DUPLICATES = Counter("edgebus_downstream_duplicates_total", "Redelivered desired-state messages the node already held", ["node"])
CREATES = Counter("edgebus_downstream_consumer_creates_total", "Times edgehub created its downstream consumer (the cloud had none)", ["node"])

#: status answers to a pull: the request expired / no messages / the request was dropped
#: (the consumer is there and answered); 503: the node's own server knows no route to the
#: cloud for it yet (a link coming up; a consumer missing on the cloud goes unanswered)
_ANSWERED = {"408", "404", "409"}
_NO_CONSUMER = "503"


class LinkView(Protocol):
    @property
    def up(self) -> bool: ...

    async def wait_up(self) -> None: ...

    async def wait_change(self) -> None: ...


@dataclass
class DownState:
    pulled: int = 0
    duplicates: int = 0
    creates: int = 0
    #: messages the consumer still held after the last delivery
    pending: int = 0
    #: when the cloud last answered a pull (time.time())
    last_answer: float = 0.0
    error: str = ""


def local_headers(headers: dict[str, str] | None, cloud_seq: int) -> dict[str, str]:
    out = {k: v for k, v in (headers or {}).items() if not k.startswith(names.HDR_CLOUD_OWN)}
    out[names.HDR_DOWN_SEQ] = str(cloud_seq)
    return out


def is_newer(held: dict[str, str] | None, cloud_seq: int) -> bool:
    """Whether a message of cloud sequence ``cloud_seq`` is newer than the one the node
    holds for its subject (``held``: its headers, None when it holds none)."""
    if not held:
        return True
    try:
        return cloud_seq > int(held.get(names.HDR_DOWN_SEQ, "0"))
    except ValueError:
        return True


def _retrieve(f: asyncio.Future[Any]) -> None:
    if not f.cancelled():
        f.exception()


class Downstream:
    def __init__(self, node: str, bus: Bus, link: LinkView, *, cloud_domain: str = names.CLOUD_DOMAIN, expires: float = topology.DOWN_PULL_EXPIRES) -> None:
        self.node = node
        self.bus = bus
        self.link = link
        self.spec = topology.down_consumer(node, cloud_domain)
        self.expires = expires
        self.next_subject = f"{names.js_api_prefix(cloud_domain)}.CONSUMER.MSG.NEXT.{names.STREAM_DOWN}.{self.spec.durable}"
        self.state = DownState()
        self._seq = 0
        self._checked = False

    async def run(self) -> None:
        backoff = Backoff(0.2, 5.0)
        while True:
            await self.link.wait_up()
            try:
                await self._pull_while_up()
                backoff.reset()
            except (BusError, OSError, ValueError) as exc:
                self.state.error = str(exc)
                delay = backoff.next()
                log.info("downstream paused (%s); resuming in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _pull_while_up(self) -> None:
        await self.bus.wait_connected()
        nc = self.bus.nc
        inbox = self.bus.new_inbox()
        sub = await nc.subscribe(f"{inbox}.*")
        try:
            if not self._checked:
                await self._ensure()  # once per process: a node whose consumer the cloud did not make
            while self.link.up:
                self._seq += 1
                reply = f"{inbox}.{self._seq}"
                req = {"batch": self.spec.batch, "expires": int(self.expires * 1e9)}
                await nc.publish(self.next_subject, json.dumps(req).encode(), reply=reply)
                if not await self._one_pull(sub, reply):
                    return  # the link went down: wait for it
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be gone
                pass

    async def _one_pull(self, sub: Any, reply: str) -> bool:
        """Receive one pull's deliveries; False when the link went down meanwhile."""
        got = 0
        deadline = time.monotonic() + self.expires + 10.0
        change = asyncio.ensure_future(self.link.wait_change())
        nxt: asyncio.Future[Any] | None = None
        try:
            while got < self.spec.batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    # no answer at all: the consumer is not there (a pull to a consumer that does
                    # not exist goes unanswered across the link), or the pull was lost
                    await self._ensure()
                    return True
                nxt = asyncio.ensure_future(sub.next_msg(timeout=left))
                nxt.add_done_callback(_retrieve)  # a stop or a closed connection: not an error
                done, _ = await asyncio.wait({nxt, change}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    await asyncio.gather(nxt, return_exceptions=True)
                    return self.link.up
                try:
                    m = nxt.result()
                except Exception:  # noqa: BLE001 - nats' timeout: no answer in time
                    await self._ensure()
                    return True
                status = (m.headers or {}).get("Status")
                if status:
                    if m.subject != reply:
                        continue  # the end of an earlier pull
                    self.state.last_answer = time.time()
                    if status in _ANSWERED:
                        return True
                    if status == _NO_CONSUMER:
                        await asyncio.sleep(1.0)  # the link's interest is still coming up
                        return True
                    if status == "100":
                        continue
                    raise BusError(f"pull refused: {status} {(m.headers or {}).get('Description', '')}")
                if not (m.reply or "").startswith("$JS.ACK."):
                    log.warning("downstream: a message on %s that is no delivery of the consumer; ignored", m.subject)
                    continue
                await self._store(m)
                got += 1
            return True
        finally:
            change.cancel()
            if nxt is not None and not nxt.done():
                nxt.cancel()  # a stop while waiting: the pending read goes too

    async def _ensure(self) -> None:
        """Make the node's consumer if the cloud has none (the node's identity was issued
        directly, or it joined before the cloud made them): asked once per process start,
        and again only after a pull that went unanswered — never on a plain reconnect."""
        try:
            await consumer_state(self.bus, self.spec.stream, self.spec.durable, domain=self.spec.domain)
        except StreamNotFound:  # (the consumer's "not found")
            await self._create()
        self._checked = True

    async def _create(self) -> None:
        await ensure_consumer(self.bus, self.spec)
        self.state.creates += 1
        CREATES.labels(self.node).inc()
        log.info("created the downstream consumer %s on the cloud's %s", self.spec.durable, names.STREAM_DOWN)

    async def _store(self, m: Any) -> None:
        md = m.metadata
        seq = md.sequence.stream
        self.state.last_answer = time.time()
        self.state.pending = int(md.num_pending or 0)
        if md.num_delivered > 1:
            held = await get_last(self.bus, names.STREAM_EDGE_DOWN, m.subject)
            if not is_newer(held.headers if held else None, seq):
                self.state.duplicates += 1
                DUPLICATES.labels(self.node).inc()
                await self.bus.nc.publish(m.reply, b"+ACK")
                return
        await self.bus.js_publish(m.subject, m.data, headers=local_headers(m.headers, seq), stream=names.STREAM_EDGE_DOWN)
        await self.bus.nc.publish(m.reply, b"+ACK")
        self.state.pulled += 1
        PULLED.labels(self.node).inc()
