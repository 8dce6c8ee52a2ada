"""Interactive exec and attach: a websocket client written from Kubernetes' streaming
protocol (``v5.channel.k8s.io``: channel byte, 0 stdin, 1 stdout, 2 stderr, 3 Status, 4
resize, 255 close) against the apiserver, the stream carried over NATS to edged and into a
real containerd (CRI streaming)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
import websockets

from edgebus.cri.containerd import Containerd
from edgebus.objects import PODS
from edgebus.testing.servers import Cluster, start_hub
from edgebus.testing.waiting import eventually

from .podmesh import PodMesh, containerd, pod, start_mesh, stop_mesh  # noqa: F401 - containerd: the fixture

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(containerd: Containerd, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PodMesh]:  # noqa: F811 - the fixture
    root = tmp_path_factory.mktemp("mesh")
    cluster = Cluster(root, start_hub(root))
    try:
        m = await start_mesh(cluster, root, containerd)
        try:
            await m.store.create(PODS, pod("shell", command=["sleep", "3600"]))
            await m.wait_phase("shell", "Running", timeout=30)
            yield m
        finally:
            await stop_mesh(m)
    finally:
        cluster.stop()


def url(mesh: PodMesh, command: list[str] | None, kind: str = "exec", **flags: bool) -> str:
    q: list[tuple[str, str]] = [(k, "true") for k, v in flags.items() if v]
    q += [("command", c) for c in command or []]
    return mesh.api_url.replace("http://", "ws://") + f"/api/v1/namespaces/default/pods/shell/{kind}?" + urlencode(q)


async def run(ws: Any, stdin: bytes | None = None, *, close_stdin: bool = False) -> tuple[bytes, bytes, dict[str, Any]]:
    """Read every channel until the stream ends: (stdout, stderr, Status)."""
    if stdin is not None:
        await ws.send(b"\x00" + stdin)
    if close_stdin:
        await ws.send(b"\xff\x00")
    out, err, status = bytearray(), bytearray(), {}
    async for msg in ws:
        ch, data = msg[0], msg[1:]
        if ch == 1:
            out += data
        elif ch == 2:
            err += data
        elif ch == 3:
            status = json.loads(data)
    return bytes(out), bytes(err), status


def connect(u: str) -> Any:
    return websockets.connect(u, subprotocols=[websockets.Subprotocol("v5.channel.k8s.io")], max_size=None, open_timeout=20)


async def test_exec_streams_stdout_stderr_and_exit_code(mesh: PodMesh) -> None:
    async with connect(url(mesh, ["sh", "-c", "echo out; echo err >&2; exit 3"], stdout=True, stderr=True)) as ws:
        assert ws.subprotocol == "v5.channel.k8s.io"
        out, err, status = await run(ws)
    assert (out, err) == (b"out\n", b"err\n")
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0] == {"reason": "ExitCode", "message": "3"}


async def test_exec_reads_standard_input_to_its_end(mesh: PodMesh) -> None:
    async with connect(url(mesh, ["sh", "-c", "read a; read b; echo got $a $b"], stdin=True, stdout=True, stderr=True)) as ws:
        out, _, status = await run(ws, b"one\ntwo\n")
    assert out == b"got one two\n" and status["status"] == "Success"
    # v5's close of channel 0 is the end of the command's input: cat ends
    data = bytes(range(256)) * 4096  # 1 MiB, through the window several times
    async with connect(url(mesh, ["sh", "-c", "cat | sha256sum"], stdin=True, stdout=True)) as ws:
        out, _, status = await asyncio.wait_for(run(ws, data, close_stdin=True), 60)
    assert out.split()[0].decode() == hashlib.sha256(data).hexdigest() and status["status"] == "Success"


async def test_interactive_shell_on_a_terminal(mesh: PodMesh) -> None:
    async with connect(url(mesh, ["sh"], stdin=True, stdout=True, tty=True)) as ws:
        await ws.send(b"\x04" + json.dumps({"Width": 100, "Height": 30}).encode())
        seen = bytearray()

        async def until(text: bytes) -> None:
            while text not in seen:
                msg = await asyncio.wait_for(ws.recv(), 15)
                if msg[0] == 1:
                    seen.extend(msg[1:])

        await ws.send(b"\x00stty size; echo sum-$((40+2))\n")
        await until(b"sum-42")
        assert b"30 100" in seen  # the resize reached the terminal
        await ws.send(b"\x00exit 5\n")
        _, _, status = await run(ws)
    assert status["details"]["causes"][0]["message"] == "5"


async def test_large_output_arrives_whole(mesh: PodMesh) -> None:
    cmd = ["sh", "-c", "dd if=/dev/urandom of=/tmp/big bs=1M count=5 2>/dev/null; sha256sum /tmp/big >&2; cat /tmp/big"]
    async with connect(url(mesh, cmd, stdout=True, stderr=True)) as ws:
        out, err, status = await run(ws)
    assert status["status"] == "Success" and len(out) == 5 << 20
    assert err.split()[0].decode() == hashlib.sha256(out).hexdigest()


async def test_twenty_concurrent_execs_take_about_the_time_of_one(mesh: PodMesh) -> None:
    async def one(i: int) -> bytes:
        async with connect(url(mesh, ["sh", "-c", f"sleep 3; echo done-{i}"], stdout=True)) as ws:
            out, _, status = await run(ws)
            assert status["status"] == "Success"
            return out

    t0 = time.monotonic()
    outs = await asyncio.gather(*(one(i) for i in range(20)))
    elapsed = time.monotonic() - t0
    assert outs == [f"done-{i}\n".encode() for i in range(20)]
    print(f"\n20 concurrent execs of 'sleep 3': {elapsed:.1f}s")
    assert elapsed < 15, elapsed  # one after the other would be 60 s


def _running(marker: str) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(int(d))
            except OSError:
                continue
    return pids


async def test_client_gone_kills_the_command(mesh: PodMesh) -> None:
    ws = await connect(url(mesh, ["sleep", "4242"], stdout=True, stderr=True))
    await eventually(lambda: bool(_running("sleep\x004242")), timeout=10, msg="the command runs in the container")
    ws.transport.abort()  # the client dies: no close handshake
    await eventually(lambda: not _running("sleep\x004242"), timeout=30, msg="the command killed on the node")


@pytest.mark.timeout(180)
async def test_stream_outlives_the_old_exec_limit(mesh: PodMesh) -> None:
    """65 s with no output at all (ExecSync gave up at 60 s): keepalives hold the pipe."""
    async with connect(url(mesh, ["sh", "-c", "sleep 65; echo still-here"], stdout=True)) as ws:
        out, _, status = await asyncio.wait_for(run(ws), 120)
    assert out == b"still-here\n" and status["status"] == "Success"


async def test_attach_sees_the_main_process(mesh: PodMesh) -> None:
    await mesh.store.create(PODS, pod("ticker", command=["sh", "-c", "while true; do echo tick; sleep 0.2; done"]))
    await mesh.wait_phase("ticker", "Running", timeout=30)
    u = mesh.api_url.replace("http://", "ws://") + "/api/v1/namespaces/default/pods/ticker/attach?stdout=true&stderr=true"
    async with connect(u) as ws:
        got = bytearray()
        while got.count(b"tick") < 3:
            msg = await asyncio.wait_for(ws.recv(), 10)
            if msg[0] == 1:
                got += msg[1:]


async def test_errors_end_the_stream_with_a_status(mesh: PodMesh) -> None:
    async with connect(mesh.api_url.replace("http://", "ws://") + "/api/v1/namespaces/default/pods/nope/exec?command=true&stdout=true") as ws:
        _, _, status = await run(ws)
    assert status["reason"] == "NotFound"
    async with connect(url(mesh, ["true"], stdout=True, container=False) + "&container=zzz") as ws:
        _, _, status = await run(ws)
    assert "container zzz is not valid for pod shell" in status["message"]
