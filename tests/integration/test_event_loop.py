"""Blocking work stays off the event loop: a slow disk (LMDB commit + fsync) or a node whose
DNS does not answer never stops a service answering, heartbeating and pinging."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgebus import names, topology
from edgebus.metaclient import MetaClient
from edgebus.natsd import free_port
from edgebus.objects import CONFIGMAPS, PODS
from edgebus.store import lmdb_store
from edgebus.testing.servers import bus_for, start_leaf
from edgebus.testing.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


async def test_a_slow_commit_does_not_stop_metamanager_answering(mesh, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _, svcs = mesh
    slow = threading.Event()
    original = lmdb_store.Store.write

    def slow_write(self, fn):  # type: ignore[no-untyped-def]
        if self.path.name == "mm" and not slow.is_set():
            slow.set()
            time.sleep(3.0)  # a disk that takes 3 s to commit and sync
        return original(self, fn)

    monkeypatch.setattr(lmdb_store.Store, "write", slow_write)
    edge_settings = svcs[2].settings

    async def measure() -> list[float]:
        """From another thread and event loop (the services run on the test's own loop)."""
        edge = bus_for(edge_settings, "test-edge")
        await edge.connect(retry_for=5)
        mc = MetaClient(edge, "edge-1", timeout=5)
        try:
            await mc.stats()
            while not slow.is_set():
                await asyncio.sleep(0.01)
            latencies = []
            for _ in range(8):
                t0 = time.monotonic()
                await mc.stats()
                latencies.append(time.monotonic() - t0)
                await asyncio.sleep(0.2)
            return latencies
        finally:
            await edge.close()

    measuring = asyncio.ensure_future(asyncio.to_thread(asyncio.run, measure()))
    await store.create(CONFIGMAPS, {"metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}})
    await store.create(PODS, {"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "v", "configMap": {"name": "c"}}]}})
    latencies = await asyncio.wait_for(measuring, 30)
    assert max(latencies) < 0.5, f"stats answered in {latencies} during a 3 s commit"
    edge = bus_for(edge_settings, "test-edge")
    await edge.connect(retry_for=5)
    try:
        await eventually(lambda: _has(MetaClient(edge, "edge-1"), "/core/v1/configmaps/default/c"), timeout=15, msg="the slow commit lands")
    finally:
        await edge.close()


async def _has(mc: MetaClient, key: str) -> bool:
    return key in {i["key"] for i in (await mc.list())["items"]}


class BlackholeDns:
    """A DNS server address that never answers (queries time out)."""

    def __init__(self, host: str = "127.0.0.153") -> None:
        self.host = host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 53))

    def close(self) -> None:
        self.sock.close()


def in_broken_dns(tmp_path: Path, dns: BlackholeDns, argv: list[str]) -> list[str]:
    """``argv`` in a private mount namespace whose resolver is ``dns`` and whose hosts file
    does not know the machine's name."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver {dns.host}\noptions timeout:2 attempts:2\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    inner = f"mount --bind {resolv} /etc/resolv.conf && mount --bind {hosts} /etc/hosts && exec \"$@\""
    return ["unshare", "--mount", "--", "sh", "-c", inner, "sh", *argv]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare (a private mount namespace)")
async def test_unresolvable_dns_does_not_stop_heartbeats(cluster, tmp_path: Path) -> None:
    leaf = start_leaf(tmp_path, cluster.hub, "edge-1")
    cluster.leaves["edge-1"] = leaf
    dns = BlackholeDns()
    proc = None
    try:
        probe = subprocess.run(
            in_broken_dns(tmp_path, dns, [sys.executable, "-c", "import socket,time; t=time.time()\ntry: socket.gethostbyname(socket.gethostname())\nexcept OSError: pass\nprint(time.time()-t)"]),
            capture_output=True, text=True, timeout=60,
        )
        assert probe.returncode == 0, probe.stderr
        assert float(probe.stdout) > 2.0, "the hostname must not resolve quickly in the test's namespace"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBUS_")}
        env.update(
            EDGEBUS_NODE="edge-1",
            EDGEBUS_NATS__URL=leaf.url,
            EDGEBUS_NATS__NKEY_FILE=str(leaf.identity.local_nkey_file("edgehub")),
            EDGEBUS_NATS__PING_INTERVAL="1",
            EDGEBUS_EDGEHUB__HEARTBEAT_INTERVAL="0.3",
            EDGEBUS_EDGEHUB__STATUS_INTERVAL="0.5",
            EDGEBUS_OPS__PORT=str(free_port()),
        )
        admin = cluster.hub.bus("test-cloud")
        await admin.connect(retry_for=10)
        await topology.ensure_cloud_streams(admin)  # heartbeats go straight to the cloud's stream
        await admin.close()
        bus = leaf.bus("test-edge")
        await bus.connect(retry_for=5)
        beats: list[float] = []

        async def on_beat(_m: object) -> None:
            beats.append(time.monotonic())

        await bus.subscribe(names.up_subject("edge-1", names.UP_HEARTBEAT), on_beat)
        log = open(tmp_path / "edgehub.log", "wb")
        proc = subprocess.Popen(in_broken_dns(tmp_path, dns, [sys.executable, "-m", "services.edgehub"]), env=env, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        await eventually(lambda: len(beats) >= 3, timeout=30, msg="first heartbeats")
        start = time.monotonic()
        await asyncio.sleep(10.0)  # several node status reports, each resolving the hostname
        window = [start] + [b for b in beats if b >= start] + [time.monotonic()]
        gaps = [b - a for a, b in zip(window, window[1:])]
        assert max(gaps) < 1.5, f"heartbeat gaps up to {max(gaps):.1f}s with a DNS that does not answer ({len(window) - 2} beats in 10 s)"
        await bus.close()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        dns.close()
