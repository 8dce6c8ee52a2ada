"""Client of a node's edged: container logs (with follow), exec, image load, state.

Used by the CLI (``edgebus logs|exec|image load``) and by the apiserver's
``/pods/{name}/log`` route, from the cloud, through the node's leaf link: it answers only
while the node is online (a clear :class:`~edgebus.errors.Unavailable` otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from edgebus import names
from edgebus.bus import Bus, BusMsg, NoResponders, NotConnected, ObjectBucket, RemoteError, RequestTimeout
from edgebus.envelope import OP_QUERY, Envelope
from edgebus.errors import ApiError, BadRequest, NotFound, Timeout, Unavailable
from edgebus.streampipe import StreamPipe


def _api_error(exc: RemoteError) -> ApiError:
    err: ApiError
    if exc.code == 404:
        err = NotFound(str(exc))
    elif exc.code == 400:
        err = BadRequest(str(exc))
    elif exc.code == 503:
        err = Unavailable(str(exc))
    else:
        err = ApiError(str(exc))
    return err


class EdgedClient:
    def __init__(self, bus: Bus, node: str, *, timeout: float = 10.0, source: str = "edgedclient") -> None:
        self.bus = bus
        self.node = node
        self.timeout = timeout
        self.source = source

    async def _call(self, op: str, content: dict[str, Any], *, timeout: float | None = None) -> Any:
        env = Envelope.new(source=self.source, operation=OP_QUERY, resource=op, content=content, sync=True)
        try:
            reply = await self.bus.call(names.edged_subject(self.node, op), env, timeout=timeout or self.timeout)
        except (NoResponders, NotConnected):
            raise Unavailable(f"node {self.node} is unreachable: its edged does not answer (node offline or edged stopped)") from None
        except RequestTimeout:
            raise Timeout(f"node {self.node} did not answer within {timeout or self.timeout:.0f}s") from None
        except RemoteError as exc:
            raise _api_error(exc) from None
        return reply.content

    async def state(self) -> dict[str, Any]:
        return dict(await self._call("state", {}))

    async def exec(self, namespace: str, name: str, command: list[str], *, container: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        q = {"namespace": namespace, "name": name, "container": container, "command": command, "timeout": timeout}
        return dict(await self._call("exec", q, timeout=timeout + 10))

    async def open_stream(self, request: dict[str, Any], *, timeout: float | None = None) -> StreamPipe:
        """Open an exec/attach stream into a container (edged's ``stream``): the pipe whose
        channels are the container's (0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4
        terminal size). edged answers once the container's stream is open."""
        sid = _nuid()
        pipe = StreamPipe(self.bus, names.edged_stream_subject(self.node, sid))
        reply = self.bus.reply_subject(self.node)  # the only kind of subject the node may stream to
        await pipe.start(reply)
        try:
            await self._call("stream", {**request, "id": sid, "reply": reply, "window": pipe.window}, timeout=timeout)
        except BaseException:
            await pipe.close()
            raise
        return pipe

    async def logs(
        self,
        namespace: str,
        name: str,
        *,
        container: str | None = None,
        tail: int | None = None,
        previous: bool = False,
        timestamps: bool = False,
        since_seconds: int | None = None,
        limit_bytes: int | None = None,
        follow: bool = False,
    ) -> AsyncGenerator[bytes, None]:
        """The log as chunks of complete lines; with ``follow`` until the container stops
        (or the stream's time limit on the node)."""
        q: dict[str, Any] = {"namespace": namespace, "name": name, "container": container, "previous": previous, "timestamps": timestamps}
        if tail is not None:
            q["tail"] = tail
        if since_seconds is not None:
            q["sinceSeconds"] = since_seconds
        if limit_bytes is not None:
            q["limitBytes"] = limit_bytes
        if not follow:
            res = await self._call("logs", q)
            yield bytes(res.get("data") or b"")
            return
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=64)
        inbox = self.bus.reply_subject(self.node)  # the only kind of subject the node may stream to

        async def on_chunk(m: BusMsg) -> None:
            try:
                env = Envelope.decode(m.data)
            except Exception:
                return
            c = env.content if isinstance(env.content, dict) else {}
            await queue.put(c)  # back-pressure: the sender waits for this ack
            await m.respond(b"")

        unsub = await self.bus.subscribe(inbox, on_chunk)
        try:
            q.update(follow=True, inbox=inbox)
            res = await self._call("logs", q)
            first = bytes(res.get("data") or b"")
            if first:
                yield first
            if not res.get("follow"):
                return
            while True:
                try:
                    c = await asyncio.wait_for(queue.get(), 30.0)
                except TimeoutError:
                    raise Unavailable(f"node {self.node} stopped streaming the log (link down?)") from None
                if c.get("eof"):
                    return
                data = bytes(c.get("data") or b"")
                if data:
                    yield data
        finally:
            await unsub()

    async def load_image(self, path: str | Path, *, bucket: str = names.BUCKET_IMAGES, cloud_domain: str | None = None, timeout: float = 600.0) -> dict[str, Any]:
        """Ship an image archive through the cloud's Object Store and have the node import it."""
        await self.state()  # fails fast and clearly when the node is offline
        p = Path(path)
        digest = await asyncio.to_thread(_sha256, p)
        obj = f"sha256-{digest}"
        store = ObjectBucket(self.bus, bucket, domain=cloud_domain)
        await store.ensure(max_bytes=-1, ttl=24 * 3600.0)
        info = await store.info(obj)
        if info is None or info.sha256 != digest:
            info = await store.put_file(obj, p)
        res = await self._call("images.load", {"bucket": bucket, "object": obj, "size": info.size, "sha256": digest}, timeout=timeout)
        return dict(res)


def _nuid() -> str:
    return secrets.token_hex(8)


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
