"""One NATS connection per process: reconnect forever, JetStream contexts per connection.

nats-py keeps JetStream context objects bound to the connection they were made on; after a
server restart they must be made anew. :meth:`Bus.js` therefore caches contexts per
*connection epoch* (incremented on every reconnect) and per domain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.nuid import NUID

from edgebus import clock, names
from edgebus.backoff import Backoff
from edgebus.bus.errors import BusError, NoResponders, NotConnected, Rejected, RemoteError, RequestTimeout, WrongRevision
from edgebus.envelope import OP_ERROR, Envelope

log = logging.getLogger("edgebus.bus")
_nuid = NUID()


class _QuietTlsEof(logging.Filter):
    """nats-py's protocol answers EOF with True, which asyncio's TLS transport logs as a
    warning on every close of a TLS connection; it means nothing here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received() has no effect when using ssl" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_QuietTlsEof())

StateCallback = Callable[[bool], Awaitable[None] | None]


@dataclass(slots=True)
class BusMsg:
    """A received message, decoupled from nats-py's type."""

    subject: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    reply: str = ""
    #: stream sequence for JetStream messages (0 for core messages)
    seq: int = 0
    num_pending: int = 0
    num_delivered: int = 0
    timestamp: datetime | None = None
    raw: Msg | None = None
    #: publishes a reply (set by the :class:`Bus` that received the message)
    responder: Callable[[str, bytes, dict[str, str] | None], Awaitable[None]] | None = None

    @classmethod
    def from_nats(cls, msg: Msg, *, jetstream: bool = False, responder: Callable[[str, bytes, dict[str, str] | None], Awaitable[None]] | None = None) -> BusMsg:
        out = cls(subject=msg.subject, data=msg.data or b"", headers=dict(msg.headers or {}), reply=msg.reply or "", raw=msg, responder=responder)
        if jetstream:
            try:
                md = msg.metadata
                out.seq = md.sequence.stream
                out.num_pending = md.num_pending or 0
                out.num_delivered = md.num_delivered or 0
                out.timestamp = md.timestamp
            except Exception:  # not a JetStream message (e.g. a status message)
                pass
        return out

    async def ack(self) -> None:
        if self.raw is not None and self.reply:
            await self.raw.ack()

    async def ack_sync(self, timeout: float = 2.0) -> None:
        if self.raw is not None and self.reply:
            await self.raw.ack_sync(timeout=timeout)

    async def nak(self, delay: float | None = None) -> None:
        if self.raw is not None and self.reply:
            await self.raw.nak(delay=delay)

    async def term(self) -> None:
        if self.raw is not None and self.reply:
            await self.raw.term()

    async def in_progress(self) -> None:
        if self.raw is not None and self.reply:
            await self.raw.in_progress()

    async def respond(self, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Reply to the sender (nats-py's ``Msg.respond`` would echo the request's headers)."""
        if self.responder is None or not self.reply:
            return
        await self.responder(self.reply, data, headers)


@dataclass(frozen=True, slots=True)
class BusAuth:
    """How a connection proves who it is, and how it checks the server.

    ``creds_file``: a NATS ``.creds`` file (user JWT + nkey seed; cloud services, admins, a
    node's leaf); ``nkey_file``: a bare nkey seed (a node's local services); ``user`` /
    ``password`` or ``token`` where a server is configured so. ``ca_file``: verify the server's
    TLS certificate against this CA bundle (the connection then requires TLS);
    ``cert_file``/``key_file``: present a TLS client certificate. ``inbox_prefix``: where
    replies to this connection's requests arrive (a node's clients use their node's, the only
    inboxes the node may receive on)."""

    creds_file: str | None = None
    nkey_file: str | None = None
    token: str | None = None
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    inbox_prefix: str | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.ca_file:
            return None
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def connect_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.creds_file:
            opts["user_credentials"] = self.creds_file
        if self.nkey_file:
            opts["nkeys_seed_str"] = Path(self.nkey_file).read_text().strip()
        if self.token:
            opts["token"] = self.token
        if self.user:
            opts["user"] = self.user
            opts["password"] = self.password or ""
        tls = self.tls_context()
        if tls is not None:
            opts["tls"] = tls
        if self.inbox_prefix:
            opts["inbox_prefix"] = self.inbox_prefix
        return opts


@dataclass(frozen=True, slots=True)
class PubAck:
    stream: str
    seq: int
    duplicate: bool
    domain: str | None


class Bus:
    """A process's NATS connection."""

    def __init__(
        self,
        servers: str | list[str],
        *,
        name: str,
        domain: str | None = None,
        ping_interval: float = 5.0,
        max_outstanding_pings: int = 2,
        reconnect_wait: float = 0.5,
        request_timeout: float = 5.0,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
        auth: BusAuth | None = None,
        node: str | None = None,
        replicas: int = 1,
    ) -> None:
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        #: JetStream replicas of the streams and buckets this connection creates in its own
        #: domain (3 on a NATS cluster; a request for more is kept)
        self.replicas = max(1, replicas)
        self.name = name
        self.domain = domain
        self.ping_interval = ping_interval
        self.max_outstanding_pings = max_outstanding_pings
        self.reconnect_wait = reconnect_wait
        self.request_timeout = request_timeout
        if auth is None:
            auth = BusAuth(token=token, user=user, password=password)
        if auth.inbox_prefix is None and node:
            auth = dataclasses.replace(auth, inbox_prefix=names.inbox_prefix(node))
        self.auth = auth
        #: the edge node this connection belongs to (None: a cloud-side connection)
        self.node = node
        self._nc: NatsClient | None = None
        self._epoch = 0
        self._js: dict[tuple[int, str | None], JetStreamContext] = {}
        self._listeners: list[StateCallback] = []
        self._connected = asyncio.Event()
        self._closing = False
        self._auth_error_at = -1e9

    def replicas_for(self, requested: int, domain: str | None = None) -> int:
        """The replicas of a stream or bucket made in ``domain`` (None: this connection's
        own): at least this connection's ``replicas`` there, as asked elsewhere."""
        home = names.node_domain(self.node) if self.node else names.CLOUD_DOMAIN
        return max(requested, self.replicas) if domain in (None, self.domain, home) else requested

    # -- connection -------------------------------------------------------------------
    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise NotConnected()
        return self._nc

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def epoch(self) -> int:
        """Incremented on every (re)connect; JetStream state is per epoch."""
        return self._epoch

    def on_state(self, cb: StateCallback) -> None:
        """Call ``cb(True|False)`` on every connect / disconnect."""
        self._listeners.append(cb)

    async def _notify(self, up: bool) -> None:
        for cb in list(self._listeners):
            try:
                res = cb(up)
                if asyncio.iscoroutine(res):
                    await res
            except Exception:
                log.exception("bus state listener failed")

    async def connect(self, *, retry_for: float | None = None) -> None:
        """Connect, retrying forever (or for ``retry_for`` seconds) until the server answers."""
        loop = asyncio.get_running_loop()
        deadline = None if retry_for is None else loop.time() + retry_for
        backoff = Backoff(0.1, 2.0)
        while True:
            # nats-py retries a first connection forever by itself (reconnects are unlimited):
            # bound it by what is left of ``retry_for``
            left = None if deadline is None else max(deadline - loop.time(), 0.5)
            try:
                self._nc = await asyncio.wait_for(self._connect_once(), left)
                break
            except Exception as exc:
                if deadline is not None and loop.time() >= deadline:
                    raise NotConnected(f"cannot connect to {self.servers}: {exc!r}") from exc
                log.info("waiting for NATS at %s (%s)", self.servers, exc)
                await asyncio.sleep(backoff.next())
        self._epoch += 1
        self._connected.set()
        log.info("connected to NATS %s as %s", self._nc.connected_url.netloc if self._nc.connected_url else "?", self.name)
        await self._notify(True)

    async def _connect_once(self) -> NatsClient:
        return await nats.connect(
            servers=self.servers,
            name=self.name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.reconnect_wait,
            ping_interval=self.ping_interval,
            max_outstanding_pings=self.max_outstanding_pings,
            connect_timeout=2,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            error_cb=self._on_error,
            closed_cb=self._on_closed,
            **self.auth.connect_options(),
        )

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self._connected.clear()
        log.warning("disconnected from NATS; reconnecting")
        await self._notify(False)

    async def _on_reconnected(self) -> None:
        self._epoch += 1
        self._js.clear()
        self._connected.set()
        log.info("reconnected to NATS (epoch %d)", self._epoch)
        await self._notify(True)

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, (nats.errors.StaleConnectionError, ConnectionRefusedError, ConnectionResetError, OSError)):
            log.debug("nats: %s", exc)
        elif "Authorization Violation" in str(exc) or "Authentication" in str(exc):
            # refused credentials: said clearly once a minute, not on every retry
            now = asyncio.get_running_loop().time()
            if now - self._auth_error_at > 60:
                self._auth_error_at = now
                log.error("the NATS server at %s refuses this process's credentials (%s); retrying", self.servers, exc)
        else:
            log.warning("nats error: %r", exc)

    async def _on_closed(self) -> None:
        self._connected.clear()

    async def wait_connected(self, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise NotConnected(f"not connected after {timeout}s") from None

    async def close(self) -> None:
        self._closing = True
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), 5)
            except Exception:
                try:
                    await self._nc.close()
                except Exception:
                    pass
        self._connected.clear()

    # -- JetStream contexts -------------------------------------------------------------
    def js(self, domain: str | None = None) -> JetStreamContext:
        """A JetStream context for this connection epoch (``domain=None``: the local one)."""
        key = (self._epoch, domain)
        ctx = self._js.get(key)
        if ctx is None:
            ctx = self.nc.jetstream(domain=domain, timeout=self.request_timeout)
            self._js = {k: v for k, v in self._js.items() if k[0] == self._epoch}
            self._js[key] = ctx
        return ctx

    # -- core messaging -----------------------------------------------------------------
    async def publish(self, subject: str, data: bytes | Envelope, headers: dict[str, str] | None = None, *, reply: str = "") -> None:
        payload, hdrs = _payload(data, headers)
        try:
            await self.nc.publish(subject, payload, reply=reply, headers=hdrs)
        except nats.errors.ConnectionClosedError as exc:
            raise NotConnected(str(exc)) from exc

    async def _respond(self, subject: str, data: bytes, headers: dict[str, str] | None) -> None:
        try:
            await self.nc.publish(subject, data, headers=headers)
        except nats.errors.ConnectionClosedError as exc:
            raise NotConnected(str(exc)) from exc

    def new_inbox(self) -> str:
        """A unique subject to receive replies or a stream of messages on."""
        return str(self.nc.new_inbox())

    async def flush(self, timeout: float = 2.0) -> None:
        """A round trip to the server. nats-py waits for the PONG with ``asyncio.wait_for``,
        which on Python 3.11 returns instead of raising when the task is cancelled as the
        PONG arrives; that cancellation is raised here, so a probing loop still stops."""
        await self.nc.flush(timeout=timeout)  # type: ignore[arg-type]  # nats-py says int, takes seconds as a float
        clock.raise_lost_cancel()

    def reply_subject(self, node: str) -> str:
        """A fresh subject where one node may answer this connection (a node can only publish
        replies under its own ``edgebus.reply.<node>.``)."""
        return f"{names.reply_prefix(node)}.{_nuid.next().decode()}"

    def _reply_prefix_for(self, subject: str) -> str | None:
        node = names.addressed_node(subject)
        if node is None or node == self.node:
            return None
        return names.reply_prefix(node)

    async def request(
        self,
        subject: str,
        data: bytes | Envelope,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        reply: str | None = None,
    ) -> BusMsg:
        """Request/reply. A request addressed to another node (``edgebus.node.<n>...``) gets a
        reply subject that node may answer on; ``reply`` names one explicitly."""
        if reply is None:
            prefix = self._reply_prefix_for(subject)
            if prefix is not None:
                reply = f"{prefix}.{_nuid.next().decode()}"
        if reply is not None:
            return await self._request_on(subject, data, headers, timeout or self.request_timeout, reply)
        payload, hdrs = _payload(data, headers)
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout or self.request_timeout, headers=hdrs)
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no responders on {subject}") from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise RequestTimeout(f"request on {subject} timed out") from None
        except nats.errors.ConnectionClosedError as exc:
            raise NotConnected(str(exc)) from exc
        clock.raise_lost_cancel()
        return BusMsg.from_nats(msg)

    async def _request_on(self, subject: str, data: bytes | Envelope, headers: dict[str, str] | None, timeout: float, reply: str) -> BusMsg:
        payload, hdrs = _payload(data, headers)
        try:
            sub = await self.nc.subscribe(reply, max_msgs=1)
            try:
                await self.nc.publish(subject, payload, reply=reply, headers=hdrs)
                msg = await sub.next_msg(timeout=timeout)
            finally:
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
        except (nats.errors.TimeoutError, TimeoutError):
            raise RequestTimeout(f"request on {subject} timed out") from None
        except nats.errors.ConnectionClosedError as exc:
            raise NotConnected(str(exc)) from exc
        clock.raise_lost_cancel()
        if msg.headers and msg.headers.get("Status") == "503" and not msg.data:
            raise NoResponders(f"no responders on {subject}")
        return BusMsg.from_nats(msg)

    async def call(self, subject: str, env: Envelope, *, timeout: float | None = None, reply: str | None = None) -> Envelope:
        """Request/reply with envelopes; an error reply raises :class:`RemoteError`."""
        answer = await self.request(subject, env, timeout=timeout, reply=reply)
        out = Envelope.decode(answer.data)
        if out.route.operation == OP_ERROR:
            c = out.content if isinstance(out.content, dict) else {}
            raise RemoteError(str(c.get("message", "remote error")), code=int(c.get("code", 500)), reason=str(c.get("reason", "InternalError")))
        return out

    async def subscribe(
        self, subject: str, cb: Callable[[BusMsg], Awaitable[None]], *, queue: str | None = None
    ) -> Callable[[], Awaitable[None]]:
        """Core subscription; returns an async ``unsubscribe``."""

        async def _cb(msg: Msg) -> None:
            await cb(BusMsg.from_nats(msg, responder=self._respond))

        sub = await self.nc.subscribe(subject, queue=queue or "", cb=_cb)

        async def unsubscribe() -> None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass

        return unsubscribe

    # -- JetStream publish ----------------------------------------------------------------
    async def js_publish(
        self,
        subject: str,
        data: bytes | Envelope,
        *,
        headers: dict[str, str] | None = None,
        stream: str | None = None,
        domain: str | None = None,
        timeout: float | None = None,
        expected_last_subject_seq: int | None = None,
    ) -> PubAck:
        payload, hdrs = _payload(data, headers)
        if expected_last_subject_seq is not None:
            hdrs = dict(hdrs or {})
            hdrs[names.HDR_EXPECTED_LAST_SUBJECT_SEQ] = str(expected_last_subject_seq)
        try:
            ack = await self.js(domain).publish(
                subject, payload, timeout=timeout or self.request_timeout, stream=stream, headers=hdrs
            )
        except nats.js.errors.APIError as exc:
            if exc.err_code == 10071:  # wrong last sequence
                raise WrongRevision(exc.description or "wrong last sequence", current=_current_seq(exc.description)) from None
            raise BusError(f"publish to {subject} failed: {exc}") from exc
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no stream captures {subject}") from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise RequestTimeout(f"publish to {subject} timed out") from None
        except nats.errors.ConnectionClosedError as exc:
            raise NotConnected(str(exc)) from exc
        clock.raise_lost_cancel()
        return PubAck(stream=ack.stream, seq=ack.seq, duplicate=bool(ack.duplicate), domain=ack.domain)


    async def js_publish_batch(
        self, messages: list[tuple[str, bytes | Envelope, dict[str, str] | None]], *, timeout: float | None = None
    ) -> PubAck:
        """Store ``(subject, data, headers)`` messages in one stream atomically (NATS 2.12
        atomic batch publish; the stream needs ``allow_atomic``): all of them or none. The
        ack names the stream and the sequence of the last message. A consistency header on
        any message (``Nats-Expected-Last-Subject-Sequence``) that fails refuses the batch
        with :class:`WrongRevision`; other refusals raise :class:`Rejected`."""
        if not messages:
            raise ValueError("an empty batch")
        batch = secrets.token_hex(16)
        try:
            for i, (subject, data, headers) in enumerate(messages, 1):
                payload, hdrs = _payload(data, headers)
                hdrs = dict(hdrs or {})
                hdrs[names.HDR_BATCH_ID] = batch
                hdrs[names.HDR_BATCH_SEQ] = str(i)
                if i < len(messages):
                    await self.nc.publish(subject, payload, headers=hdrs)
                    continue
                hdrs[names.HDR_BATCH_COMMIT] = "1"
                reply = await self.nc.request(subject, payload, headers=hdrs, timeout=timeout or self.request_timeout)
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no stream captures {messages[-1][0]}") from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise RequestTimeout(f"batch publish to {messages[-1][0]} timed out") from None
        except nats.errors.ConnectionClosedError as exc:
            raise NotConnected(str(exc)) from exc
        try:
            ack = json.loads(reply.data)
        except ValueError:
            raise BusError(f"batch publish: unreadable answer {reply.data[:100]!r}") from None
        err = ack.get("error")
        if err:
            code, desc = int(err.get("err_code") or 0), str(err.get("description") or "")
            if code == 10071:
                raise WrongRevision(desc or "wrong last sequence", current=_current_seq(desc))
            raise Rejected(f"batch publish to {messages[-1][0]} refused: {desc} ({code})", code=code)
        return PubAck(stream=str(ack.get("stream", "")), seq=int(ack.get("seq", 0)), duplicate=bool(ack.get("duplicate")), domain=ack.get("domain"))


def _payload(data: bytes | Envelope, headers: dict[str, str] | None) -> tuple[bytes, dict[str, str] | None]:
    if isinstance(data, Envelope):
        hdrs = data.headers()
        if headers:
            hdrs.update(headers)
        return data.encode(), hdrs
    return data, headers


def _current_seq(description: str | None) -> int | None:
    # "wrong last sequence: 42"
    if description and ":" in description:
        try:
            return int(description.rsplit(":", 1)[1].strip())
        except ValueError:
            return None
    return None


def error_reply(env: Envelope | None, *, source: str, message: str, code: int = 500, reason: str = "InternalError") -> Envelope:
    content: dict[str, Any] = {"message": message, "code": code, "reason": reason}
    if env is None:
        return Envelope.new(source=source, operation=OP_ERROR, content=content)
    return env.reply(source=source, content=content, operation=OP_ERROR)
