"""edged's request/reply API (core NATS, answered on the node's leaf server; reachable from
the cloud through the leaf link while the node is online).

* ``edgebus.node.<node>.edged.logs`` - a container's log (tail, since, timestamps,
  previous); with ``follow`` and an ``inbox`` the new lines are then streamed to the inbox as
  requests (each acknowledged by the reader, so a reader that went away ends the stream),
  ending with ``{eof: true}``. A followed stream is bounded in time and count.
* ``edgebus.node.<node>.edged.exec`` - runs a command in a running container (CRI
  ``ExecSync``) and returns its exit code and output.
* ``edgebus.node.<node>.edged.stream`` - opens an exec or attach stream into a running
  container (CRI ``Exec``/``Attach`` streaming, :mod:`services.edged.streaming`), carried
  over NATS: frames from the cloud on ``edgebus.node.<node>.edged.stream.<id>``, to it on
  the reply subject it named.
* ``edgebus.node.<node>.edged.images.load`` - fetches an image archive from the cloud's
  Object Store bucket and imports it into containerd.
* ``edgebus.node.<node>.edged.state`` - runtime availability and the pods edged runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebus import names
from edgebus.bus import Bus, BusError, Message, ObjectBucket, ObjectTooLarge, Router
from edgebus.cri import CriClient, CriError, CriNotFound, api
from edgebus.cri.containerd import import_image
from edgebus.envelope import Envelope
from edgebus.errors import BadRequest, NotFound, Unavailable
from services.edged import logs as logfiles
from services.edged import spec as S
from services.edged import streaming
from services.edged.config import Settings
from services.edged.manager import PodManager
from services.edged.runtime import pod_labels_of
from services.edged.status import RUNNING, CState

log = logging.getLogger("edgebus.edged")


@dataclass
class Ctx:
    node: str
    settings: Settings
    bus: Bus
    cri: CriClient
    manager: PodManager
    followers: set[asyncio.Task[None]] = field(default_factory=set)
    #: open exec/attach streams (made at the first)
    sessions: streaming.Sessions | None = None
    runtime_version: str = ""


def _str(q: dict[str, Any], key: str, required: bool = False) -> str | None:
    v = q.get(key)
    if v is None or v == "":
        if required:
            raise BadRequest(f"{key} is required")
        return None
    if not isinstance(v, str):
        raise BadRequest(f"{key} must be a string")
    return v


def _int(q: dict[str, Any], key: str) -> int | None:
    v = q.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise BadRequest(f"{key} must be a non-negative integer")
    return v


async def find_container(ctx: Ctx, namespace: str, name: str, container: str | None, *, previous: bool = False) -> CState:
    """The container of a pod this node runs (its latest instance, or the one before)."""
    mgr = ctx.manager
    uid = mgr.find(namespace, name)
    if uid is None:
        boxes = await ctx.cri.list_pod_sandbox({S.LABEL_NODE: ctx.node, S.LABEL_POD_NAMESPACE: namespace, S.LABEL_POD_NAME: name})
        if boxes:
            uid = pod_labels_of(max(boxes, key=lambda b: b.created_at))[2]
    if uid is None:
        raise NotFound(f'pods "{name}" not found on node {ctx.node}')
    pod = mgr.desired.get(uid)
    if pod is not None:
        cnames = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
    else:
        cnames = sorted({c.labels.get(S.LABEL_CONTAINER, "") for c in await ctx.cri.list_containers({S.LABEL_NODE: ctx.node, S.LABEL_POD_UID: uid})} - {""})
    if container is None:
        if len(cnames) != 1:
            raise BadRequest(f"a container name must be specified for pod {name}, choose one of: [{' '.join(cnames)}]")
        container = cnames[0]
    elif container not in cnames:
        raise BadRequest(f"container {container} is not valid for pod {name}")
    found = await ctx.cri.list_containers({S.LABEL_NODE: ctx.node, S.LABEL_POD_UID: uid, S.LABEL_CONTAINER: container})
    states = [s for c in found if (s := await ctx.manager.view.cstate(c)) is not None]
    states.sort(key=lambda s: (s.attempt, s.created_at), reverse=True)
    if previous:
        if len(states) < 2:
            raise BadRequest(f'previous terminated container "{container}" in pod "{name}" not found')
        return states[1]
    if not states:
        raise BadRequest(f'container "{container}" in pod "{name}" is waiting to start')
    return states[0]


async def find_sandbox(ctx: Ctx, namespace: str, name: str) -> str:
    """The ready sandbox of a pod this node runs."""
    labels = {S.LABEL_NODE: ctx.node, S.LABEL_POD_NAMESPACE: namespace, S.LABEL_POD_NAME: name}
    uid = ctx.manager.find(namespace, name)
    if uid is not None:
        labels[S.LABEL_POD_UID] = uid
    ready = [b for b in await ctx.cri.list_pod_sandbox(labels) if b.state == api.SANDBOX_READY]
    if not ready:
        raise NotFound(f'pods "{name}" not found on node {ctx.node}, or not running')
    return str(max(ready, key=lambda b: b.created_at).id)


async def _log_path(ctx: Ctx, c: CState) -> str:
    try:
        return str((await ctx.cri.container_status(c.id)).log_path)
    except CriNotFound:
        raise NotFound(f"container {c.name} is gone") from None


def build_router(node: str) -> Router[Ctx]:
    router: Router[Ctx] = Router("edged")

    @router.reply(names.edged_subject(node, "logs"), name="logs")
    async def logs(m: Message, ctx: Ctx) -> dict[str, Any]:
        q = m.env.content if isinstance(m.env.content, dict) else {}
        ns = _str(q, "namespace") or "default"
        name = _str(q, "name", required=True)
        assert name is not None
        previous = bool(q.get("previous"))
        c = await find_container(ctx, ns, name, _str(q, "container"), previous=previous)
        path = await _log_path(ctx, c)
        since = _int(q, "sinceSeconds")
        limit = min(_int(q, "limitBytes") or ctx.settings.edged.max_log_bytes, ctx.settings.edged.max_log_bytes)
        timestamps = bool(q.get("timestamps"))
        data, offset = logfiles.read(path, tail=_int(q, "tail"), since_ns=time.time_ns() - since * 1_000_000_000 if since else None, timestamps=timestamps, limit_bytes=limit)
        follow = bool(q.get("follow")) and not previous
        inbox = _str(q, "inbox")
        if follow:
            if not inbox:
                raise BadRequest("follow needs an inbox to stream to")
            if len(ctx.followers) >= ctx.settings.edged.max_log_followers:
                raise Unavailable(f"too many followed log streams on node {ctx.node} (at most {ctx.settings.edged.max_log_followers})")
            task = asyncio.create_task(follow_log(ctx, c, path, offset, inbox, timestamps), name=f"follow:{c.id[:12]}")
            ctx.followers.add(task)
            task.add_done_callback(ctx.followers.discard)
        return {"container": c.name, "data": data, "follow": follow}

    @router.reply(names.edged_subject(node, "exec"), name="exec")
    async def exec_(m: Message, ctx: Ctx) -> dict[str, Any]:
        q = m.env.content if isinstance(m.env.content, dict) else {}
        name = _str(q, "name", required=True)
        assert name is not None
        cmd = q.get("command")
        if not isinstance(cmd, list) or not cmd or not all(isinstance(x, str) for x in cmd):
            raise BadRequest("command must be a non-empty list of strings")
        timeout = q.get("timeout") or 30
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise BadRequest("timeout must be a positive number of seconds")
        c = await find_container(ctx, _str(q, "namespace") or "default", name, _str(q, "container"))
        if c.state != RUNNING:
            raise BadRequest(f"container {c.name} is not running (it is {c.state})")
        try:
            code, out, err = await ctx.cri.exec_sync(c.id, cmd, timeout=float(timeout))
        except CriError as exc:
            raise BadRequest(f"exec failed: {exc}") from None
        cap = ctx.settings.edged.max_log_bytes
        return {"container": c.name, "exitCode": code, "stdout": out[-cap:], "stderr": err[-cap:]}

    @router.reply(names.edged_subject(node, "stream"), name="stream")
    async def stream(m: Message, ctx: Ctx) -> dict[str, Any]:
        q = m.env.content if isinstance(m.env.content, dict) else {}
        name = _str(q, "name", required=True)
        assert name is not None
        sid = _str(q, "id", required=True)
        assert sid is not None
        if ctx.sessions is None:
            ctx.sessions = streaming.Sessions(ctx.cri)
        if q.get("kind") == "portforward":
            sb = await find_sandbox(ctx, _str(q, "namespace") or "default", name)
            await streaming.open_portforward(ctx.sessions, ctx.bus, names.edged_stream_subject(ctx.node, sid), sb, q)
            return {"sandbox": sb}
        c = await find_container(ctx, _str(q, "namespace") or "default", name, _str(q, "container"))
        if c.state != RUNNING:
            raise BadRequest(f"container {c.name} is not running (it is {c.state})")
        await streaming.open_stream(ctx.sessions, ctx.bus, names.edged_stream_subject(ctx.node, sid), c.id, q)
        return {"container": c.name}

    @router.reply(names.edged_subject(node, "images.load"), name="images-load")
    async def images_load(m: Message, ctx: Ctx) -> dict[str, Any]:
        q = m.env.content if isinstance(m.env.content, dict) else {}
        bucket = _str(q, "bucket") or names.BUCKET_IMAGES
        obj = _str(q, "object", required=True)
        assert obj is not None
        # the caller's "size" is not trusted: the stored size is checked first, and the
        # bytes are counted as they arrive (the stored metadata could lie too)
        limit = ctx.settings.edged.max_image_bytes
        wasm = ctx.manager.cri.wasm
        if not ctx.manager.runtime_ok and wasm is None:
            raise Unavailable(f"container runtime of node {ctx.node} is unavailable: {ctx.manager.runtime_error}")
        bucket_ = ObjectBucket(ctx.bus, bucket, domain=ctx.settings.cloud_domain)
        try:
            stored = await bucket_.info(obj)
        except BusError as exc:
            raise Unavailable(f"cannot read {obj} in the cloud's bucket {bucket}: {exc}") from None
        if stored is None:
            raise NotFound(f"image archive {obj} is not in the cloud's bucket {bucket}")
        if stored.size > limit:
            raise BadRequest(_too_large(obj, f"is {stored.size} bytes", limit))
        tmpdir = Path(ctx.settings.edged.data_dir) / "tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmpdir, suffix=".tar")
        os.close(fd)
        try:
            t0 = time.monotonic()
            try:
                info = await bucket_.get_file(obj, tmp, max_bytes=limit)
            except ObjectTooLarge:
                raise BadRequest(_too_large(obj, "grew past the limit while it arrived", limit)) from None
            except BusError as exc:
                raise Unavailable(f"cannot fetch {obj} from the cloud's bucket {bucket}: {exc}") from None
            fetched = time.monotonic() - t0
            images: list[str] | None = None
            if wasm is not None:  # a Wasm artifact goes into the module store
                try:
                    images = await asyncio.to_thread(wasm.import_archive, tmp)
                except ValueError:
                    images = None
                except OSError as exc:
                    raise BadRequest(f"import failed: {exc}") from None
            if images is None:
                if not ctx.manager.runtime_ok:
                    raise Unavailable(f"container runtime of node {ctx.node} is unavailable: {ctx.manager.runtime_error} (Wasm modules can be loaded: this archive holds none)")
                try:
                    images = await asyncio.to_thread(import_image, ctx.settings.edged.containerd, tmp)
                except Exception as exc:
                    raise BadRequest(f"import failed: {exc}") from None
            log.info("imported %s (%d bytes, fetched in %.2fs): %s", obj, info.size, fetched, images)
            return {"node": ctx.node, "images": images, "bytes": info.size, "fetchSeconds": round(fetched, 3)}
        finally:
            Path(tmp).unlink(missing_ok=True)

    @router.reply(names.edged_subject(node, "state"), name="state")
    async def state(m: Message, ctx: Ctx) -> dict[str, Any]:
        mgr = ctx.manager
        pods = []
        for uid, p in sorted(mgr.desired.items(), key=lambda kv: (S.pod_ref(kv[1]).namespace, S.pod_ref(kv[1]).name)):
            ref = S.pod_ref(p)
            w = mgr.workers.get(uid)
            pub = (w.published if w else None) or {}
            pods.append({"namespace": ref.namespace, "name": ref.name, "uid": uid, "phase": pub.get("phase", "Pending")})
        return {
            "node": ctx.node,
            "runtime": {"ok": mgr.runtime_ok, "error": "" if mgr.runtime_ok else mgr.runtime_error, "version": ctx.runtime_version, "endpoint": ctx.settings.edged.containerd},
            "wasm": {"ok": mgr.wasm_ok},
            "desiredLoaded": mgr.loaded,
            "pods": pods,
            "followers": len(ctx.followers),
        }

    return router


async def follow_log(ctx: Ctx, c: CState, path: str, offset: int, inbox: str, timestamps: bool) -> None:
    """Stream what the container writes to ``inbox`` until it stops, the reader goes away,
    or the time limit passes."""
    f = logfiles.Follower(path, offset, timestamps=timestamps)
    deadline = time.monotonic() + ctx.settings.edged.log_follow_max_seconds
    last_sent = time.monotonic()
    reason = "container stopped"

    async def send(content: dict[str, Any]) -> bool:
        try:
            await ctx.bus.request(inbox, Envelope.new(source="edged", operation="log", content=content), timeout=5.0)
            return True
        except BusError:
            return False

    try:
        while True:
            data = f.poll()
            if data:
                if not await send({"data": data}):
                    return
                last_sent = time.monotonic()
                continue
            if time.monotonic() > deadline:
                reason = "time limit reached"
                break
            try:
                running = (await ctx.cri.container_status(c.id)).state == api.CONTAINER_RUNNING
            except CriError:
                running = False
            if not running:
                tail = f.poll()
                if tail and not await send({"data": tail}):
                    return
                break
            if time.monotonic() - last_sent > 5.0:
                if not await send({"data": b""}):
                    return  # the reader went away
                last_sent = time.monotonic()
            await asyncio.sleep(0.2)
        await send({"eof": True, "reason": reason})
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("following the log of %s failed", c.id[:12])


def _too_large(obj: str, what: str, limit: int) -> str:
    return f"image archive {obj} {what}: this node accepts at most {limit} bytes (edged.max_image_bytes); nothing was imported"
