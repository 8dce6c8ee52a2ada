"""Hollow edge nodes (like KubeEdge's Edgemark): many simulated nodes in one process, each
speaking to the cloud exactly what a real node's leaf server and edgehub speak.

What is real, per hollow node:

* its identity: it joins through cloudhub's join subject (the Authority code path the
  apiserver's ``POST /edgebus/v1/join`` relays to) with a bootstrap token, an identity nkey
  and a CSR, and gets its own user JWT (the scoped node template) and link certificate;
* its link: a *leafnode* connection to the hub's leafnode port (TLS with the link
  certificate, ``CONNECT`` signed with the node's nkey), the protocol nats-server speaks to
  another server (``LS+``, ``LMSG``/``HLMSG``, ``PING``/``PONG``): the hub checks the
  credential and enforces the node's permissions as for a real node;
* its downstream: edgehub's pulls from the node's durable consumer on ``EDGEBUS_DOWN``
  (made by cloudhub when the node joined): the same ``CONSUMER.MSG.NEXT`` requests with the
  same batch and wait, each delivered message acknowledged; a reconnect sends a pull and
  nothing else;
* its upstream: edgehub's forwarding protocol — JetStream publishes into ``EDGEBUS_UP`` with
  ``Nats-Msg-Id``, the outbox sequence and epoch headers, acknowledged by the cloud —
  carrying the node status (at connect and every ``status_interval`` s) and pod status;
  and its heartbeats (every ``heartbeat`` s), published into ``EDGEBUS_UP`` as edgehub
  does: the bare envelope, no headers, no ack asked for.

What is simulated: the node has no server, store or services of its own. Its runtime is
hollow: a pod bound to it is reported Running and Ready as soon as it arrives, and a
terminating pod is confirmed deleted at once. Outbox messages are forwarded straight away
(no local outbox: while the link is down the hollow node publishes nothing, as a real
node's forwarder would not, and resumes with the next sequence); what was not acknowledged
is published again with the same message id (after a reconnect, or 5 s), so the cloud
stores it once. On a cluster the nodes are spread over the servers' leafnode ports and
reconnect to the next; a pull left unanswered past its expiry (lost with the server it went
through) is sent again, as edgehub does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebus import names, topology
from edgebus.backoff import delay_for

from edgebus.bus import Bus
from edgebus.envelope import OP_KEEPALIVE, OP_QUERY, OP_UPDATE, Envelope
from edgebus.identity import pki
from edgebus.identity.natsjwt import read_creds
from edgebus.identity.node import NodeIdentity

PULL_BATCH = topology.down_consumer("x").batch

CAPACITY = {"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}
#: label of every hollow node (workloads target them with a nodeSelector)
HOLLOW_LABEL = "edgebus.io/hollow"
#: seconds after which an unacknowledged forward is published again
RESEND_AFTER = 5.0


@dataclass
class Stats:
    """What every hollow node of a fleet did (summed; one instance per fleet)."""

    bytes_up: int = 0
    bytes_down: int = 0
    published: int = 0
    acked: int = 0
    nacked: int = 0
    downstream: int = 0
    #: pull requests sent, and their timeout answers (an idle consumer's)
    pulls: int = 0
    pull_timeouts: int = 0
    errors: list[str] = field(default_factory=list)


class HollowNode:
    def __init__(self, name: str, ident: NodeIdentity, fleet: HollowFleet) -> None:
        self.name = name
        self.ident = ident
        self.fleet = fleet
        self.token = names.encode_token(name)
        self.epoch = str(time.time_ns())
        self.seq = 0
        #: unacknowledged forwards: token -> (sent at, subject, headers, payload)
        self.pending: dict[str, tuple[float, str, dict[str, str], bytes]] = {}
        self.attempts = 0
        #: when the downstream consumer last showed signs of life (a message or heartbeat)
        self.down_seen = 0.0
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.connected = asyncio.Event()
        self.consumer_ok = asyncio.Event()
        self._w: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._inbox = f"{names.inbox_prefix(name)}.h"
        self._pull_inbox = f"{names.inbox_prefix(name)}.d"
        self._pull_reply = ""
        self._pulled = 0

    # -- the leafnode protocol --------------------------------------------------------------
    async def connect(self) -> None:
        f = self.fleet
        # a cluster's leafnode ports: spread over the servers, the next one on each retry
        port = f.leaf_ports[(f.index(self) + self.attempts) % len(f.leaf_ports)]
        self.attempts += 1
        r, w = await asyncio.wait_for(asyncio.open_connection(f.host, port), 10)
        line = await asyncio.wait_for(r.readline(), 10)
        if not line.startswith(b"INFO "):
            raise ConnectionError(f"no INFO from the hub: {line[:80]!r}")
        info = json.loads(line[5:])
        await asyncio.wait_for(w.start_tls(f.tls_context(self), server_hostname=f.host), 20)
        jwt, key = read_creds(self.ident.creds_file.read_text())
        sig = base64.urlsafe_b64encode(key.sign(str(info["nonce"]).encode())).rstrip(b"=").decode()
        conn = {"name": self.name, "hub": False, "headers": True, "tls_required": True, "proto": 1, "jwt": jwt, "sig": sig, "compression": "off"}
        self._w = w
        self._send(f"CONNECT {json.dumps(conn)}\r\nPING\r\n".encode())
        for sub in (names.inbox_filter(self.name), names.node_filter(self.name)):
            self._send(f"LS+ {sub}\r\n".encode())
        await w.drain()
        self._task = asyncio.get_running_loop().create_task(self._read(r), name=f"hollow-{self.name}")
        self.connected.set()
        self.down_seen = time.monotonic()
        self._pull()
        for tok, (_, subject, headers, payload) in list(self.pending.items()):  # as a real outbox: again, same id
            self._hpub(subject, f"{self._inbox}.{tok}", headers, payload)


    async def close(self) -> None:
        self.connected.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._w is not None:
            self._w.close()
            self._w = None

    def _send(self, data: bytes) -> None:
        if self._w is None or self._w.is_closing():
            raise ConnectionError("not connected")
        self._w.write(data)
        self.fleet.stats.bytes_up += len(data)

    def _hpub(self, subject: str, reply: str, headers: dict[str, str], payload: bytes) -> None:
        hdr = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
        head = f"HMSG {subject} {reply} {len(hdr)} {len(hdr) + len(payload)}\r\n" if reply else f"HMSG {subject} {len(hdr)} {len(hdr) + len(payload)}\r\n"
        self._send(head.encode() + hdr + payload + b"\r\n")

    def _pub(self, subject: str, reply: str, payload: bytes) -> None:
        head = f"LMSG {subject} {reply} {len(payload)}\r\n" if reply else f"LMSG {subject} {len(payload)}\r\n"
        self._send(head.encode() + payload + b"\r\n")

    async def _read(self, r: asyncio.StreamReader) -> None:
        st = self.fleet.stats
        try:
            while True:
                line = await r.readline()
                if not line:
                    return
                st.bytes_down += len(line)
                if line.startswith(b"PING"):
                    self._send(b"PONG\r\n")
                elif line.startswith(b"-ERR"):
                    st.errors.append(f"{self.name}: {line[5:].strip().decode(errors='replace')}")
                elif line.startswith((b"HMSG ", b"HLMSG ", b"LMSG ")):
                    parts = line.decode().split()
                    has_h = parts[0] != "LMSG"
                    total = int(parts[-1])
                    reply = parts[2] if len(parts) > (4 if has_h else 3) else ""
                    data = await r.readexactly(total + 2)
                    st.bytes_down += total + 2
                    hdr_len = int(parts[-2]) if has_h else 0
                    self._on_msg(parts[1], reply, data[:hdr_len], data[hdr_len:-2])
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            return
        finally:
            self.connected.clear()
            self.consumer_ok.clear()

    # -- what the hub sends -----------------------------------------------------------------
    def _on_msg(self, subject: str, reply: str, hdr: bytes, data: bytes) -> None:
        st = self.fleet.stats
        if subject.startswith(self._inbox):
            tok = subject.rsplit(".", 1)[-1]
            if tok not in self.pending:
                return
            if b'"error"' in data or hdr.startswith(b"NATS/1.0 503"):
                st.nacked += 1  # not stored (e.g. no stream leader yet): kept, sent again later
            else:
                del self.pending[tok]
                st.acked += 1
            return
        self.down_seen = time.monotonic()
        if hdr.startswith(b"NATS/1.0 ") and not reply:  # a pull's status answer
            code = hdr[9:12]
            if subject != self._pull_reply:
                return  # the end of an earlier pull
            self.consumer_ok.set()
            if code in (b"408", b"404", b"409"):
                st.pull_timeouts += 1
            elif code != b"100":
                st.errors.append(f"{self.name}: pull: {hdr[9:80]!r}")
                return
            self._pull()

            return
        if subject.startswith(self._pull_inbox) and "@" in reply:
            # a pulled message, routed on the pull's inbox: nats-server sends its
            # acknowledgement subject and its own subject as ``<ack>@<subject>``
            reply, subject = reply.split("@", 1)
        if subject.startswith(names.down_filter(self.name)[:-1]):
            st.downstream += 1
            self.consumer_ok.set()
            if reply:
                self._pub(reply, "", b"+ACK")
            self._pulled += 1
            if self._pulled >= PULL_BATCH:
                self._pull()
            try:
                env = Envelope.decode(data)
            except Exception as exc:  # noqa: BLE001 - counted, never fatal
                st.errors.append(f"{self.name}: bad downstream message: {exc}")
                return
            self.fleet.on_downstream(self, subject, env)
            if env.route.resource == "pods" and isinstance(env.content, dict):
                self._hollow_runtime(env)

    def _pull(self) -> None:
        """Ask the node's consumer for the next batch (edgehub's request: batch, long wait)."""
        f = self.fleet
        self.fleet.stats.pulls += 1
        self._pulled = 0
        self._pull_reply = f"{self._pull_inbox}.{self.fleet.stats.pulls}"
        req = {"batch": PULL_BATCH, "expires": int(f.pull_expires * 1e9)}
        subject = f"{names.js_api_prefix(f.cloud_domain)}.CONSUMER.MSG.NEXT.{names.STREAM_DOWN}.{names.down_consumer(self.name)}"
        try:
            self._pub(subject, self._pull_reply, json.dumps(req).encode())
        except ConnectionError:
            pass

    # -- what the node sends up (edgehub's forwarding protocol) -------------------------------
    def forward(self, kind: str, env: Envelope, ref: names.ObjectRef | None = None) -> None:
        self.seq += 1
        tok = f"{self.seq}"
        headers = {**env.headers(), names.HDR_MSG_ID: f"{self.token}:{self.epoch}:{self.seq}", names.HDR_UP_SEQ: str(self.seq), names.HDR_UP_EPOCH: self.epoch}
        headers[names.HDR_EXPECTED_STREAM] = names.STREAM_UP
        subject, payload = names.up_subject(self.name, kind, ref), env.encode()
        self.pending[tok] = (time.monotonic(), subject, headers, payload)

        self.fleet.stats.published += 1
        self._hpub(subject, f"{self._inbox}.{tok}", headers, payload)

    def resend(self, *, older_than: float) -> None:
        """Publish again what was not acknowledged within ``older_than`` s (same message
        id: the cloud stores it once), as edgehub's forwarder does."""
        now = time.monotonic()
        for tok, (at, subject, headers, payload) in list(self.pending.items()):
            if now - at >= older_than:
                self.pending[tok] = (now, subject, headers, payload)
                try:
                    self._hpub(subject, f"{self._inbox}.{tok}", headers, payload)
                except ConnectionError:
                    return

    def heartbeat(self) -> None:
        """As edgehub sends it: straight into the cloud's stream, outside the outbox (no
        sequence, no cursor, never sent again: the next one is due anyway), the bare
        envelope without headers and without asking for an ack."""
        env = Envelope.new(source="edgehub", operation=OP_KEEPALIVE, resource="nodes", content={"time": time.time_ns()})
        self.fleet.stats.published += 1
        self._pub(names.up_subject(self.name, names.UP_HEARTBEAT), "", env.encode())

    def node_status(self) -> None:
        status = {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "nodeInfo": {"kubeletVersion": "v1.30.0-edgebus-hollow", "operatingSystem": "linux", "architecture": "amd64"},
            "capacity": dict(CAPACITY),
            "allocatable": dict(CAPACITY),
        }
        env = Envelope.new(source="edgehub", operation=OP_UPDATE, resource="nodes", content={"time": time.time_ns(), "status": status})
        self.forward(names.UP_STATUS, env, names.ObjectRef("nodes", None, self.name))

    def _hollow_runtime(self, env: Envelope) -> None:
        pod = env.content
        md = pod.get("metadata") or {}
        ns, pname, uid = str(md.get("namespace") or "default"), str(md.get("name") or ""), md.get("uid")
        if not pname or (pod.get("spec") or {}).get("nodeName") != self.name:
            return
        ref = names.ObjectRef("pods", ns, pname)
        if env.route.operation == "delete" or md.get("deletionTimestamp"):
            self.pods.pop((ns, pname), None)
            content: dict[str, Any] = {"time": time.time_ns(), "uid": uid, "deleted": True, "status": {}}
        else:
            if (ns, pname) in self.pods and self.pods[(ns, pname)].get("uid") == uid:
                return  # already running
            self.pods[(ns, pname)] = {"uid": uid}
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            conds = [{"type": t, "status": "True", "lastTransitionTime": now} for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
            cs = [{"name": c.get("name", "main"), "ready": True, "restartCount": 0, "image": c.get("image", ""), "state": {"running": {"startedAt": now}}} for c in (pod.get("spec") or {}).get("containers") or []]
            content = {"time": time.time_ns(), "uid": uid, "status": {"phase": "Running", "conditions": conds, "containerStatuses": cs, "hostIP": "127.0.0.1", "podIP": "10.0.0.1", "startTime": now}}
        try:
            self.forward(names.UP_STATUS, Envelope.new(source="edged", operation=OP_UPDATE, resource="pods", content=content), ref)
        except ConnectionError:
            pass


class HollowFleet:
    """N hollow nodes in this process (see the module docstring)."""

    def __init__(
        self,
        root: Path,
        *,
        host: str,
        leaf_port: int,
        ca_file: str,
        leaf_ports: list[int] | None = None,
        heartbeat: float = 10.0,
        status_interval: float = 300.0,
        pull_expires: float = topology.DOWN_PULL_EXPIRES,
        cloud_domain: str = names.CLOUD_DOMAIN,
        on_downstream: Callable[[HollowNode, str, Envelope], None] | None = None,
    ) -> None:
        self.root = root
        self.host = host
        self.leaf_port = leaf_port
        #: every server's leafnode port (a cluster): nodes are spread over them and fail over
        self.leaf_ports = list(leaf_ports or [leaf_port])
        self._index: dict[str, int] = {}
        self.ca_file = ca_file
        self.heartbeat = heartbeat
        self.status_interval = status_interval
        self.pull_expires = pull_expires
        self.cloud_domain = cloud_domain
        self.nodes: dict[str, HollowNode] = {}
        self.stats = Stats()
        self._on_downstream = on_downstream
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def index(self, node: HollowNode) -> int:
        return self._index.setdefault(node.name, len(self._index))

    def on_downstream(self, node: HollowNode, subject: str, env: Envelope) -> None:
        if self._on_downstream is not None:
            self._on_downstream(node, subject, env)

    def tls_context(self, node: HollowNode) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.load_cert_chain(str(node.ident.link_cert_file), str(node.ident.link_key_file))
        return ctx

    async def join(self, bus: Bus, nodes: list[str], token: str, *, parallel: int = 8, labels: dict[str, str] | None = None) -> float:
        """Join every node through cloudhub's join subject (each its own identity); seconds."""
        sem = asyncio.Semaphore(parallel)
        t0 = time.monotonic()

        async def one(n: str) -> None:
            ident = NodeIdentity(self.root / n)
            if not ident.joined:
                async with sem:
                    key = ident.identity_key()
                    link = pki.new_key()
                    body = {"token": token, "node": n, "nkey": key.public, "csr": pki.new_csr(link, n).decode(), "labels": {HOLLOW_LABEL: "true", **(labels or {})}}
                    env = Envelope.new(source="bench", operation=OP_QUERY, resource="nodes", content=body)
                    out = await bus.call(names.JOIN_SUBJECT, env, timeout=60.0)
                    ident.save_join(out.content, pki.key_pem(link))
            self.nodes[n] = HollowNode(n, ident, self)

        await asyncio.gather(*(one(n) for n in nodes))
        return time.monotonic() - t0

    async def connect(self, nodes: list[HollowNode] | None = None, *, parallel: int = 32, timeout: float = 300.0) -> None:
        """Connect (all at once, ``parallel`` handshakes in flight) and send each node's status."""
        sem = asyncio.Semaphore(parallel)

        async def one(h: HollowNode) -> None:
            attempt = 0
            while True:  # bounded by ``timeout`` below
                async with sem:
                    try:
                        await h.connect()
                        h.node_status()
                        h.heartbeat()
                        return
                    except (OSError, ConnectionError, TimeoutError, ssl.SSLError) as exc:
                        await h.close()
                        if attempt == 0:
                            self.stats.errors.append(f"{h.name}: connect: {exc!r}")
                attempt += 1
                await asyncio.sleep(delay_for(attempt, 0.2, 2.0))

        tasks = [asyncio.ensure_future(one(h)) for h in (nodes or list(self.nodes.values()))]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)
        except TimeoutError:
            pass  # the guard keeps trying
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def start(self) -> None:
        self._stop.clear()
        self._tasks.append(asyncio.get_running_loop().create_task(self._beats(), name="hollow-beats"))
        self._tasks.append(asyncio.get_running_loop().create_task(self._guard(), name="hollow-guard"))

    async def _beats(self) -> None:
        """Heartbeats every ``heartbeat`` s and status every ``status_interval`` s, spread
        evenly over the interval (as N independent nodes would be)."""
        last_status = time.monotonic()
        while not self._stop.is_set():
            t0 = time.monotonic()
            status = t0 - last_status >= self.status_interval
            if status:
                last_status = t0
            nodes = list(self.nodes.values())
            step = self.heartbeat / max(len(nodes), 1)
            for i, h in enumerate(nodes):
                if self._stop.is_set():
                    return
                if h.connected.is_set():
                    try:
                        h.heartbeat()
                        if status:
                            h.node_status()
                    except ConnectionError:
                        pass
                delay = t0 + (i + 1) * step - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def _guard(self) -> None:
        """Reconnect nodes whose link dropped (as a node's server does: every second)."""
        while not self._stop.is_set():
            await asyncio.sleep(1.0)
            down = [h for h in self.nodes.values() if not h.connected.is_set()]
            # a pull unanswered past its expiry was lost (on a cluster: with the server it
            # went through, while the link, to another server, stayed up): pull again, as
            # edgehub does when a pull gets no answer
            silent = time.monotonic() - self.pull_expires - 2.0
            for h in self.nodes.values():
                if h.connected.is_set():
                    h.resend(older_than=RESEND_AFTER)
                if h.connected.is_set() and h.down_seen < silent:
                    h.down_seen = time.monotonic()
                    h._pull()
            if down:
                for h in down:
                    await h.close()
                await self.connect(down, parallel=64)

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(h.close() for h in self.nodes.values()), return_exceptions=True)

    def unacked(self) -> int:
        return sum(len(h.pending) for h in self.nodes.values())


def new_uid() -> str:
    return str(uuid.uuid4())
