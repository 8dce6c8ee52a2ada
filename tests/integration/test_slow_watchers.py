"""A watcher that stops reading costs bounded memory: the metaserver closes a watch that
fell too far behind (as Kubernetes does; the client lists and watches again), and a Mirror
that falls behind drops its queued events and lists again."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx

from edgebus.bus import Bus, BusMsg
from edgebus.envelope import Envelope
from edgebus.metaclient import MetaClient, Mirror
from edgebus.objects import NODES, SERVICES
from edgebus.testing.servers import bus_for
from edgebus.testing.waiting import eventually


def _qsize(w: object) -> int:
    return getattr(w, "queue", w).qsize()  # type: ignore[attr-defined]


async def test_a_stalled_watch_is_closed_and_its_memory_bounded(mesh) -> None:
    store, _, svcs = mesh
    mm = svcs[2]
    await eventually(lambda: _exists(store), timeout=15, msg="edge-1 joined")
    port = mm.settings.metamanager.metaserver_port
    # the metaserver is built at its first connection; then its fan-out of committed changes
    # is one of metamanager's listeners
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
    [changes] = [f.__self__ for f in mm.ctx.listeners if type(getattr(f, "__self__", None)).__name__ == "Changes"]
    changes.buffer = 50
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # a client that stops reading
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /api/v1/namespaces/default/services?watch=true HTTP/1.1\r\nHost: edge\r\n\r\n")
    try:
        await eventually(lambda: len(changes.queues) == 1, timeout=10, msg="the watch is open")
        peak = 0
        note = "x" * 30_000
        for i in range(300):  # services go to every node; ~9 MB of watch events, more than socket buffers hold
            md = {"name": f"svc-{i}", "namespace": "default", "annotations": {"note": note}}
            await store.create(SERVICES, {"metadata": md, "spec": {"selector": {"app": "a"}, "ports": [{"port": 80}]}})
            peak = max([peak, *(_qsize(w) for w in changes.queues)])
        mc = MetaClient(bus_for(mm.settings, "t"), "edge-1")
        await mc.bus.connect(retry_for=5)
        try:
            await eventually(lambda: _count(mc, 300), timeout=60, msg="all services on edge-1")
        finally:
            await mc.bus.close()
        peak = max([peak, *(_qsize(w) for w in changes.queues)])
        assert peak <= 50, f"a stalled watch held {peak} changes"
        await eventually(lambda: not changes.queues, timeout=10, msg="the stalled watch is dropped")
        # the client reads again: the stream ends (it lists and watches again)
        got = await asyncio.wait_for(asyncio.to_thread(_read_to_eof, sock), 30)
        assert got.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()


def _read_to_eof(sock: socket.socket) -> bytes:
    sock.settimeout(20)
    out = bytearray()
    while chunk := sock.recv(65536):
        out += chunk
    return bytes(out)


async def _exists(store) -> bool:  # type: ignore[no-untyped-def]
    await store.get(NODES, None, "edge-1")
    return True


async def _count(mc: MetaClient, n: int) -> bool:
    return len((await mc.list("services", "default", objects=False))["items"]) >= n


async def test_a_mirror_that_falls_behind_lists_again_instead_of_queueing() -> None:
    bus = Bus("nats://127.0.0.1:1", name="t")  # never connected: events are fed directly
    mirror = Mirror(MetaClient(bus, "edge-1"), ("configmaps",))
    mirror._relist = False  # as after its first listing
    t0 = time.monotonic()
    for i in range(30_000):  # events arriving while its consumer is busy
        env = Envelope.new(source="metamanager", operation="update", resource="configmaps", content={"type": "MODIFIED", "key": f"k{i}", "object": {}}, seq=i + 1)
        await mirror._on_event(BusMsg("edgebus.node.edge-1.meta.events.configmaps", env.encode()))
    assert mirror._events.qsize() <= 10_000, f"{mirror._events.qsize()} events queued"
    assert mirror._relist, "a mirror that dropped events must list again"
    assert time.monotonic() - t0 < 30
