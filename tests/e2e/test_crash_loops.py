"""Crash loops: every service of the cloud and of the node killed (-9) three times in a row
while desired state and upstream messages flow. The lab's supervisor backs off (1 s, 2 s,
4 s: a crash loop never spins), and nothing is lost or applied twice: the node ends with
the latest version of every object, the cloud with every upstream message exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from contextlib import aclosing
from pathlib import Path

import pytest

from edgebus import names
from edgebus.backoff import JITTER
from edgebus.bus import CaughtUp, read_stream
from edgebus.envelope import Envelope
from edgebus.objects import CONFIGMAPS, PODS
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

N_CM, ROUNDS, N_UP, KILLS = 20, 10, 300, 3


async def test_every_service_in_a_crash_loop_during_a_burst(tmp_path: Path) -> None:
    rl = await start_lab(tmp_path, proxy=False, grace=30.0, devices=False)
    watchdog = asyncio.create_task(rl.lab._watchdog())  # the supervisor's restarts (edgebus up runs it)
    try:
        await _run(rl)
    finally:
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        await stop_lab(rl)


async def _run(rl: RunningLab) -> None:
    lab = rl.lab
    # every service process (those started on demand - edgemesh, the mappers - only run while
    # the node needs them: not here)
    victims = [n for n, p in lab.procs.items() if p.spec.argv[1:2] == ["-m"] and p.spec.argv[2].startswith("services.") and not p.spec.on_demand]
    assert len(victims) >= 8, victims
    for i in range(N_CM):
        await rl.store.create(CONFIGMAPS, {"metadata": {"name": f"c-{i:02d}", "namespace": "default"}, "data": {"v": "0"}})
    volumes = [{"name": f"v{i}", "configMap": {"name": f"c-{i:02d}"}} for i in range(N_CM)]
    await rl.store.create(PODS, {"metadata": {"name": "holder", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "busybox"}], "volumes": volumes}})
    await eventually(lambda: _synced(rl, "0"), timeout=30, msg="initial sync")

    async def downstream() -> None:
        for r in range(1, ROUNDS + 1):
            for i in range(N_CM):
                await _retry(lambda i=i, r=r: _update(rl, i, str(r)))
            await asyncio.sleep(0.3)

    async def upstream() -> None:
        for n in range(N_UP):
            env = Envelope.new(source="test", operation="event", resource="events", content={"n": n, "time": time.time_ns()})
            # sent again when the node's server is too busy to answer in time: the same
            # message id, so JetStream keeps one copy
            await _retry(lambda env=env: rl.edge.js_publish(names.outbox_subject("edge-1", names.UP_EVENT), env, stream=names.STREAM_EDGE_UP))
            await asyncio.sleep(0.02)

    flows = [asyncio.create_task(downstream()), asyncio.create_task(upstream())]
    deaths: dict[str, list[float]] = {v: [] for v in victims}
    spawns: dict[str, list[float]] = {v: [] for v in victims}
    for _ in range(KILLS):  # each round: kill every service, then again as soon as it is back
        pids = {}
        for v in victims:
            p = lab.procs[v]
            assert p.popen is not None
            pids[v] = p.popen.pid
            p.popen.send_signal(signal.SIGKILL)
            deaths[v].append(time.monotonic())
        await eventually(lambda pids=pids: all((p := lab.procs[v].popen) is not None and p.pid != pids[v] for v in victims), timeout=60, interval=0.05, msg="respawned")
        for v in victims:
            spawns[v].append(lab.procs[v].started_at)
    await asyncio.gather(*flows)
    for v in victims:
        assert lab.procs[v].restarts == KILLS, (v, lab.procs[v].restarts)
        delays = [s - d for d, s in zip(deaths[v], spawns[v])]
        # the watchdog notices a death within 0.5 s, then waits 0.5·2^restarts s (1, 2, 4),
        # jittered down by at most JITTER of it (so restarts of many services spread out)
        for k, d in enumerate(delays, 1):
            assert d >= (1 - JITTER) * 0.5 * 2**k - 0.1, f"{v}: restart {k} came after {d:.2f}s, no back-off"

    await eventually(lambda: _all_ready(rl), timeout=90, msg="every service ready again")
    await eventually(lambda: _synced(rl, str(ROUNDS)), timeout=60, msg="the node has the latest version of everything")
    changes = [c for c in (await rl.meta.changes(0, 10_000))["changes"] if c["type"] != "STATUS"]
    pairs = [(c["key"], c["sync"]) for c in changes]
    assert len(pairs) == len(set(pairs)), "a downstream message was applied twice"
    seen = await eventually(lambda: _up(rl, N_UP), timeout=60, msg="every upstream message in the cloud")
    assert sorted(seen) == list(range(N_UP)) and set(seen.values()) == {1}, "each upstream message exactly once"


async def _retry(fn, attempts: int = 50) -> None:  # type: ignore[no-untyped-def]
    for _ in range(attempts):
        try:
            await fn()
            return
        except Exception:
            await asyncio.sleep(0.2)
    await fn()


async def _update(rl: RunningLab, i: int, v: str) -> None:
    cur = await rl.store.get(CONFIGMAPS, "default", f"c-{i:02d}")
    cur["data"] = {"v": v}
    await rl.store.update(CONFIGMAPS, cur)


async def _synced(rl: RunningLab, v: str) -> bool:
    items = (await rl.meta.list("configmaps"))["items"]
    return len(items) == N_CM and all(i["object"]["data"] == {"v": v} for i in items)


async def _all_ready(rl: RunningLab) -> bool:
    for p in rl.lab.procs.values():
        if p.spec.on_demand and not p.wanted:
            continue  # not needed by the node: not running
        try:
            await asyncio.wait_for(rl.lab._wait_ready(p, timeout=1.0), 2.0)
        except Exception:
            return False
    return True


async def _up(rl: RunningLab, n: int) -> Counter[int] | None:
    seen: Counter[int] = Counter()
    async with aclosing(read_stream(rl.cloud, names.STREAM_UP, names.up_subject("edge-1", names.UP_EVENT), stop_when_caught_up=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            seen[Envelope.decode(m.data).content["n"]] += 1
    return seen if len(seen) >= n else None
