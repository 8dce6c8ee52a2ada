"""``kubectl exec`` and ``kubectl attach`` on the node: CRI streaming, carried over NATS.

edged's ``stream`` request (from the apiserver, through the leaf link) names a container,
a command (exec) or none (attach), and which of stdin/stdout/stderr/tty. edged asks the
runtime for a streaming URL (CRI ``Exec`` / ``Attach``), connects to containerd's streaming
server (channels 0 stdin, 1 stdout, 2 stderr, 3 the final ``Status``, 4 terminal size),
answers, and then carries the channels both ways through a :class:`StreamPipe` (the
cloud's frames on ``edgebus.node.<node>.edged.stream.<id>``, the node's on the reply
subject the cloud chose): flow-controlled, as many at once as callers open, no time cap.
The runtime's side is SPDY/3.1 (:mod:`edgebus.spdy`, protocol ``v4.channel.k8s.io``: one
SPDY stream per channel), which, unlike its websocket protocol, can half-close standard
input: ``kubectl exec -i`` and ``kubectl cp`` into a pod see the end of their input.

When the caller goes away (it resets the pipe, or falls silent), the command's processes
are killed: the runtime would leave a non-interactive command running. edged finds them
as the processes that appeared in the container's PID namespace while the stream started
(starts are serialized per container for that) and kills them with their descendants.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

from prometheus_client import Gauge

from edgebus import spdy
from edgebus.cri import CriClient, CriError
from edgebus.errors import BadRequest
from edgebus.streampipe import PipeReset, StreamPipe

log = logging.getLogger("edgebus.edged.streaming")

STREAMS = Gauge("edgebus_edged_streams", "Open exec/attach streams")
PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4


# -- the processes of a stream -------------------------------------------------------------


def _pid_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _procs(ns: str) -> dict[int, int]:
    """pid -> parent pid of every process in PID namespace ``ns`` (host pids)."""
    out: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        if _pid_ns(pid) != ns:
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            out[pid] = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def descendants(tree: dict[int, int], roots: set[int]) -> set[int]:
    """``roots`` and every process below them in ``tree`` (pid -> parent pid)."""
    out = {r for r in roots if r in tree}
    grew = True
    while grew:
        grew = False
        for pid, ppid in tree.items():
            if ppid in out and pid not in out:
                out.add(pid)
                grew = True
    return out


class Sessions:
    """The open streams of one edged, and who started which processes."""

    def __init__(self, cri: CriClient) -> None:
        self.cri = cri
        self.locks: dict[str, asyncio.Lock] = {}
        self.claimed: dict[str, set[int]] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def container_ns(self, cid: str) -> str | None:
        pid = await self.cri.container_pid(cid)
        return _pid_ns(pid) if pid else None

    async def start(self, cid: str, connect: Any) -> tuple[Any, set[int], str | None]:
        """Connect (``connect()``), and find the processes the connection started."""
        lock = self.locks.setdefault(cid, asyncio.Lock())
        async with lock:
            ns = await self.container_ns(cid)
            before = set(await asyncio.to_thread(_procs, ns)) if ns else set()
            ws = await connect()
            mine: set[int] = set()
            if ns:
                claimed = self.claimed.setdefault(cid, set())
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline:
                    now = set(await asyncio.to_thread(_procs, ns))
                    mine = now - before - claimed
                    if mine:
                        break
                    await asyncio.sleep(0.02)
                claimed |= mine
            return ws, mine, ns

    def release(self, cid: str, pids: set[int]) -> None:
        self.claimed.get(cid, set()).difference_update(pids)

    @staticmethod
    def kill(ns: str | None, pids: set[int]) -> int:
        if not ns or not pids:
            return 0
        victims = descendants(_procs(ns), pids)
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return len(victims)


# -- one stream ----------------------------------------------------------------------------


def check_request(q: dict[str, Any]) -> dict[str, Any]:
    kind = q.get("kind") or "exec"
    if kind not in ("exec", "attach"):
        raise BadRequest(f"unknown stream kind {kind!r}")
    for key in ("id", "reply"):
        if not isinstance(q.get(key), str) or not q[key]:
            raise BadRequest(f"{key} is required")
    cmd = q.get("command")
    if kind == "exec" and (not isinstance(cmd, list) or not cmd or not all(isinstance(x, str) for x in cmd)):
        raise BadRequest("command must be a non-empty list of strings")
    flags = {k: bool(q.get(k)) for k in ("stdin", "stdout", "stderr", "tty")}
    if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
        raise BadRequest("you must specify at least one of stdin, stdout, stderr")
    return {"kind": kind, "command": cmd, **flags}


class RuntimeStream:
    """The runtime's side of one exec/attach: a SPDY session with a stream per channel."""

    def __init__(self, session: spdy.SpdySession, close: Any, streams: dict[int, spdy.SpdyStream]) -> None:
        self.session = session
        self._close = close
        self.streams = streams

    @classmethod
    async def open(cls, url: str, r: dict[str, Any]) -> RuntimeStream:
        session, proto, close = await spdy.connect(url, [PROTOCOL])
        if proto != PROTOCOL:
            await close()
            raise BadRequest(f"the runtime's streaming server speaks {proto or 'no known protocol'}, not {PROTOCOL}")
        wanted = [(ERROR, "error")]
        wanted += [(ch, name) for ch, name, on in ((STDIN, "stdin", r["stdin"]), (STDOUT, "stdout", r["stdout"]), (STDERR, "stderr", r["stderr"] and not r["tty"]), (RESIZE, "resize", r["tty"])) if on]
        try:
            streams = {ch: await session.open_stream({"streamType": name}) for ch, name in wanted}
        except BaseException:
            await close()
            raise
        return cls(session, close, streams)

    async def output(self, pipe: StreamPipe) -> None:
        """stdout and stderr to the pipe as they come; the Status last (it ends the command)."""

        async def copy(ch: int) -> None:
            st = self.streams[ch]
            while (data := await st.read()) is not None:
                await pipe.send(ch, data)

        await asyncio.gather(*(copy(ch) for ch in (STDOUT, STDERR) if ch in self.streams))
        status = b""
        while (data := await self.streams[ERROR].read()) is not None:
            status += data
        if status:
            await pipe.send(ERROR, status)

    async def input(self, ch: int, data: bytes | None) -> None:
        st = self.streams.get(ch)
        if st is None:
            return
        if data is None:
            await st.close()
        else:
            await st.write(data)

    async def close(self) -> None:
        await self._close()


async def open_stream(sessions: Sessions, bus: Any, subject: str, cid: str, q: dict[str, Any]) -> None:
    """Connect to the container's stream and start carrying it (in a task); returns once
    the runtime has accepted the stream."""
    r = check_request(q)
    try:
        if r["kind"] == "exec":
            url = await sessions.cri.exec_url(cid, r["command"], stdin=r["stdin"], stdout=r["stdout"], stderr=r["stderr"], tty=r["tty"])
        else:
            url = await sessions.cri.attach_url(cid, stdin=r["stdin"], stdout=r["stdout"], stderr=r["stderr"], tty=r["tty"])
    except CriError as exc:
        raise BadRequest(f"{r['kind']} failed: {exc}") from None

    async def connect() -> RuntimeStream:
        return await RuntimeStream.open(url, r)

    pipe = StreamPipe(bus, str(q["reply"]))
    await pipe.start(subject)
    try:
        if r["kind"] == "exec":
            rs, pids, ns = await sessions.start(cid, connect)
        else:
            rs, pids, ns = await connect(), set(), None
    except Exception as exc:
        await pipe.close()
        raise BadRequest(f"{r['kind']} failed: cannot open the container's stream: {exc}") from None
    task = asyncio.get_running_loop().create_task(_carry(sessions, pipe, rs, cid, pids, ns), name=f"stream:{q['id']}")
    sessions.tasks.add(task)
    task.add_done_callback(sessions.tasks.discard)


async def _carry(sessions: Sessions, pipe: StreamPipe, rs: RuntimeStream, cid: str, pids: set[int], ns: str | None) -> None:
    STREAMS.inc()
    caller_gone = False

    async def up() -> None:  # the caller -> the container
        while True:
            item = await pipe.recv()
            if item is None:
                return
            ch, data = item
            if ch in (STDIN, RESIZE):
                await rs.input(ch, data)

    try:
        d = asyncio.create_task(rs.output(pipe), name="stream-down")
        u = asyncio.create_task(up(), name="stream-up")
        done, _ = await asyncio.wait({d, u}, return_when=asyncio.FIRST_COMPLETED)
        if d in done and not isinstance(d.exception(), PipeReset):
            # the command ended (the runtime ended its streams, the Status last)
            with contextlib.suppress(Exception):
                await pipe.finish()
            u.cancel()
        else:
            caller_gone = True
            d.cancel()
            u.cancel()
        for t in (d, u):
            with contextlib.suppress(BaseException):
                await t
    finally:
        STREAMS.dec()
        with contextlib.suppress(Exception):
            await rs.close()
        if caller_gone:
            n = await asyncio.to_thread(Sessions.kill, ns, pids)
            if n:
                log.info("stream into %s: the caller went away, killed %d process(es)", cid[:12], n)
        sessions.release(cid, pids)
        await pipe.close()


# -- port-forward ------------------------------------------------------------------------

PORTFORWARD = "portforward.k8s.io"
DATA = 1


async def open_portforward(sessions: Sessions, bus: Any, subject: str, sandbox_id: str, q: dict[str, Any]) -> None:
    """One forwarded connection to ``port`` of a pod (CRI ``PortForward``: containerd
    connects inside the pod's network namespace), carried as channel 1 of a pipe; an error
    of the runtime (nothing listens, say) arrives on channel 3."""
    port = q.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise BadRequest("port must be between 1 and 65535")
    for key in ("id", "reply"):
        if not isinstance(q.get(key), str) or not q[key]:
            raise BadRequest(f"{key} is required")
    try:
        url = await sessions.cri.port_forward_url(sandbox_id, [port])
        session, _proto, close = await spdy.connect(url, [PORTFORWARD])
    except (CriError, OSError, spdy.SpdyError, TimeoutError) as exc:
        raise BadRequest(f"port-forward failed: {exc}") from None
    try:
        headers = {"port": str(port), "requestID": "0"}
        err = await session.open_stream({"streamType": "error", **headers})
        data = await session.open_stream({"streamType": "data", **headers})
    except BaseException:
        await close()
        raise
    pipe = StreamPipe(bus, str(q["reply"]))
    await pipe.start(subject)
    task = asyncio.get_running_loop().create_task(_forward(pipe, err, data, close), name=f"portforward:{q['id']}")
    sessions.tasks.add(task)
    task.add_done_callback(sessions.tasks.discard)


async def _forward(pipe: StreamPipe, err: spdy.SpdyStream, data: spdy.SpdyStream, close: Any) -> None:
    async def down() -> None:  # the pod's port -> the caller
        async def errors() -> None:
            msg = b""
            while (chunk := await err.read()) is not None:
                msg += chunk
            if msg:
                await pipe.send(ERROR, msg)

        e = asyncio.create_task(errors())
        while (chunk := await data.read()) is not None:
            await pipe.send(DATA, chunk)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(e, 1.0)
        e.cancel()

    async def up() -> None:  # the caller -> the pod's port
        while (item := await pipe.recv()) is not None:
            ch, chunk = item
            if ch == DATA:
                if chunk is None:
                    await data.close()
                else:
                    await data.write(chunk)

    STREAMS.inc()
    try:
        d = asyncio.create_task(down(), name="forward-down")
        u = asyncio.create_task(up(), name="forward-up")
        done, _ = await asyncio.wait({d, u}, return_when=asyncio.FIRST_COMPLETED)
        if d in done and not isinstance(d.exception(), PipeReset):
            with contextlib.suppress(Exception):
                await pipe.finish()
            # the caller may still be sending (a half-closed connection): until it ends
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(u, 30)
        for t in (d, u):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
    finally:
        STREAMS.dec()
        with contextlib.suppress(Exception):
            await close()
        await pipe.close()


__all__ = ["open_portforward", "RuntimeStream", "Sessions", "check_request", "descendants", "open_stream"]
