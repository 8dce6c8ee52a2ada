"""A node's disk fills up: its local store (metamanager's LMDB, on a small tmpfs made for the
test) refuses commits. That is reported - the Node's DiskPressure condition, a Warning Event,
metamanager's log - nothing that was not stored is acknowledged (nothing is dropped or
dead-lettered), and once space is freed everything catches up."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import aclosing
from pathlib import Path

import pytest

from edgebus import names
from edgebus.bus import CaughtUp, read_stream
from edgebus.objects import CONFIGMAPS, EVENTS, NODES, PODS
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs"),
]

N_CM, SIZE = 12, 200_000  # 2.4 MB of desired state that does not fit


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """edge-1's metamanager store on an 8 MiB tmpfs."""
    mnt = tmp_path / "lab" / "nodes" / "edge-1" / "metamanager"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_a_full_disk_is_reported_loses_nothing_and_catches_up(tmp_path: Path, small_disk: Path) -> None:
    rl = await start_lab(tmp_path, proxy=False, grace=30.0, devices=False)
    try:
        await _run(rl, small_disk)
    finally:
        await stop_lab(rl)


async def _run(rl: RunningLab, disk: Path) -> None:
    await rl.store.create(CONFIGMAPS, {"metadata": {"name": "small", "namespace": "default"}, "data": {"v": "1"}})
    volumes = [{"name": "small", "configMap": {"name": "small"}}] + [{"name": f"v{i}", "configMap": {"name": f"big-{i:02d}"}} for i in range(N_CM)]
    await rl.store.create(PODS, {"metadata": {"name": "holder", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "busybox"}], "volumes": volumes}})
    await eventually(lambda: _has(rl, ["/core/v1/configmaps/default/small"]), timeout=30, msg="initial sync")
    # fill the disk, leaving less than the new objects need
    free = shutil.disk_usage(disk).free
    filler = disk / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(free - 300_000, 0))
    for i in range(N_CM):
        await rl.store.create(CONFIGMAPS, {"metadata": {"name": f"big-{i:02d}", "namespace": "default"}, "data": {"blob": "x" * SIZE}})

    node = await eventually(lambda: _condition(rl, "True"), timeout=60, msg="DiskPressure reported on the Node")
    assert "could not commit" in node["message"]
    await eventually(lambda: _event(rl, "NodeHasDiskPressure"), timeout=30, msg="a Warning event")
    log = Path(rl.lab.procs["edge-1/metamanager"].spec.log).read_text()
    assert "local store full" in log
    keys = {i["key"] for i in (await rl.meta.list("configmaps"))["items"]}
    assert not any(k.startswith("/core/v1/configmaps/default/big-") for k in keys) or len(keys) < N_CM + 1, "they did not fit"
    st = await _consumer(rl)
    assert st.num_pending + st.num_ack_pending > 0, "downstream messages acknowledged although not stored"
    assert await _edge_dead_letters(rl) == [], "a message the full disk refused was dead-lettered"

    filler.unlink()  # space again
    want = ["/core/v1/configmaps/default/small", *(f"/core/v1/configmaps/default/big-{i:02d}" for i in range(N_CM))]
    await eventually(lambda: _has(rl, want), timeout=90, interval=0.5, msg="everything caught up")
    await eventually(lambda: _condition(rl, "False"), timeout=30, msg="DiskPressure cleared")
    await eventually(lambda: _event(rl, "NodeHasNoDiskPressure"), timeout=30, msg="a Normal event")
    items = {i["key"]: i for i in (await rl.meta.list("configmaps"))["items"]}
    assert all(len(items[k]["object"]["data"]["blob"]) == SIZE for k in want[1:])


async def _has(rl: RunningLab, keys: list[str]) -> bool:
    got = {i["key"] for i in (await rl.meta.list("configmaps", objects=False))["items"]}
    return set(keys) <= got


async def _condition(rl: RunningLab, status: str):  # type: ignore[no-untyped-def]
    n = await rl.store.get(NODES, None, "edge-1")
    for c in (n.get("status") or {}).get("conditions") or []:
        if c.get("type") == "DiskPressure" and c.get("status") == status:
            return c
    return None


async def _event(rl: RunningLab, reason: str) -> bool:
    items, _ = await rl.store.list(EVENTS, "default")
    items += (await rl.store.list(EVENTS, None))[0]
    return any(e.get("reason") == reason and (e.get("involvedObject") or {}).get("name") == "edge-1" for e in items)


async def _consumer(rl: RunningLab):  # type: ignore[no-untyped-def]
    from edgebus.bus import consumer_state

    return await consumer_state(rl.edge, names.STREAM_EDGE_DOWN, names.CONSUMER_METAMANAGER)


async def _edge_dead_letters(rl: RunningLab) -> list[str]:
    out = []
    async with aclosing(read_stream(rl.edge, names.STREAM_DLQ, names.DLQ_FILTER, stop_when_caught_up=True, headers_only=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            out.append(m.headers.get("Edgebus-Subject", ""))
    return [s for s in out if "configmaps" in s]
