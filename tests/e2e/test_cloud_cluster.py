"""The lab's cloud as a 3-server NATS cluster (JetStream R3) loses a server under load.

A real node (edge-1, every edge process) and a few hollow nodes (each its own leaf link,
spread over the servers) run while ConfigMaps used by a pod on every node change and the
nodes forward events and statuses. The server leading the lease bucket is killed (-9) and
restarted a while later. Nothing is lost and nothing is doubled (every object version
reaches every node, edge-1 applies each once; every upstream message is stored once), no
node is ever NotReady, each leader lease is held again by a live process, and the cluster
recovers by itself; the restarted server rejoins as a current replica.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from edgebus import names
from edgebus.bus import Bus, BusAuth, CaughtUp, read_stream
from edgebus.bus.kv import KV
from edgebus.envelope import Envelope
from edgebus.lab import create_token
from edgebus.objects import CONFIGMAPS, NODES, PODS
from edgebus.testing.hollow import HollowFleet, HollowNode
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

N_HOLLOW, N_CM, ROUNDS, N_UP = 4, 6, 20, 600
HOLLOW_UP = "hollow-up"


async def test_cloud_cluster_loses_a_server_under_load(tmp_path: Path) -> None:
    rl = await start_lab(tmp_path, proxy=False, grace=10.0, heartbeat=1.0, devices=False, workloads=False, cloud_servers=3)
    plan = rl.lab.plan
    fleet = HollowFleet(tmp_path / "hollow", host=plan.host, leaf_port=plan.cloud_leaf_port, leaf_ports=plan.cloud_leaf_ports(), ca_file=str(plan.ca_file), heartbeat=1.0, status_interval=2.0, pull_expires=5.0, on_downstream=on_downstream)
    try:
        await _run(rl, fleet)
    finally:
        await fleet.stop()
        await stop_lab(rl)


async def _run(rl: RunningLab, fleet: HollowFleet) -> None:
    lab, plan = rl.lab, rl.lab.plan
    for name in (names.STREAM_UP, names.STREAM_DOWN, names.kv_stream(names.BUCKET_LEASES)):
        info = await eventually(lambda name=name: rl.cloud.js().stream_info(name), timeout=30, msg=name)
        assert info.config.num_replicas == 3, name
    # hollow nodes: joined through cloudhub, each on its own link
    tok = await create_token(plan, uses=None, ttl=600.0, description="hollow")
    hollow = [f"hollow-{i}" for i in range(N_HOLLOW)]
    await fleet.join(rl.cloud, hollow, tok.bootstrap)
    sent: dict[str, list[int]] = defaultdict(list)
    for h in fleet.nodes.values():
        _record(h, sent)
    await fleet.connect(timeout=60)
    fleet.start()
    everyone = ["edge-1", *hollow]
    for n in everyone:
        await eventually(lambda n=n: rl.node_ready(n), timeout=60, msg=f"{n} Ready")

    # a pod on every node uses every ConfigMap: each change goes to every node
    for i in range(N_CM):
        await rl.store.create(CONFIGMAPS, {"metadata": {"name": f"c-{i}", "namespace": "default"}, "data": {"v": "0"}})
    vols = [{"name": f"v{i}", "configMap": {"name": f"c-{i}"}} for i in range(N_CM)]
    for n in everyone:
        await rl.store.create(PODS, {"metadata": {"name": f"p-{n}", "namespace": "default"}, "spec": {"nodeName": n, "containers": [{"name": "c", "image": "busybox"}], "volumes": vols}})
    await eventually(lambda: _synced(rl, fleet, "0"), timeout=60, msg="initial sync")

    not_ready: set[str] = set()
    stop = asyncio.Event()

    async def readiness() -> None:  # no node may be NotReady at any point
        while not stop.is_set():
            try:
                items, _ = await rl.store.list(NODES)
                for n in items:
                    conds = {c["type"]: c["status"] for c in n.get("status", {}).get("conditions", [])}
                    if n["metadata"]["name"] in everyone and conds.get("Ready") != "True":
                        not_ready.add(n["metadata"]["name"])
            except Exception:
                pass  # the API may answer slowly while the cluster re-elects
            await asyncio.sleep(0.5)

    stalls: list[float] = [0.0]

    async def downstream() -> None:
        for r in range(1, ROUNDS + 1):
            for i in range(N_CM):
                t0 = time.monotonic()
                await _retry(lambda i=i, r=r: _update(rl, i, str(r)))
                stalls.append(time.monotonic() - t0)
            await asyncio.sleep(1.5)

    async def upstream() -> None:
        for n in range(N_UP):
            env = Envelope.new(source="test", operation="event", resource="events", content={"n": n, "time": time.time_ns()})
            await _retry(lambda env=env: rl.edge.js_publish(names.outbox_subject("edge-1", names.UP_EVENT), env, stream=names.STREAM_EDGE_UP))
            await asyncio.sleep(0.06)

    watcher = asyncio.create_task(readiness())
    sysbus = Bus(plan.cloud_nats_urls, name="probe-sys", auth=BusAuth(creds_file=str(plan.cloud_pki().sys_creds_file), ca_file=plan.ca_file))
    await sysbus.connect(retry_for=10)
    leases = KV(rl.cloud, names.BUCKET_LEASES)
    assert await _holders(leases), "no leader lease held"
    flows = [asyncio.create_task(downstream()), asyncio.create_task(upstream())]
    try:
        # round 1: the server carrying edge-1's leaf link; round 2: the JetStream meta leader
        for round_ in ("edge-1's server", "the meta leader"):
            await asyncio.sleep(2.0)
            servers = await _servers(sysbus)
            if round_ == "edge-1's server":
                victim = next(name for name, d in servers.items() if any(lf.get("name") == "edge-1" for lf in d["leafz"].get("leafs") or []))
            else:
                victim = next(d["jsz"]["meta_cluster"]["leader"] for d in servers.values() if (d["jsz"].get("meta_cluster") or {}).get("leader"))
            before = await _holders(leases)
            revs = {role: await _revision(leases, role) for role in before}
            # the leases whose holder is connected to the victim must pass to (or be taken again by) a live process
            on_victim = {c.get("name") for c in servers[victim]["connz"].get("connections") or []}
            affected = {role for role, ident in before.items() if _service_of(lab, ident) in on_victim}
            proc = lab.procs[_proc_of(victim)]
            assert proc.popen is not None
            proc.popen.kill()
            proc.popen.wait(5)
            killed_at = time.monotonic()

            async def leases_held(before: dict[str, str] = before, affected: set[str] = affected, revs: dict[str, int] = revs) -> bool:
                # every lease held by a live process, and those of the victim's clients written
                # (renewed or taken over) since the kill
                now = await _holders(leases)
                written = [await _revision(leases, r) > revs[r] for r in affected]
                return set(now) >= set(before) and all(_alive(lab, ident) for ident in now.values()) and all(written)

            await eventually(leases_held, timeout=30, msg=f"every lease held by a live process after killing {round_}")
            after = await _holders(leases)
            print(f"{round_} ({victim}) killed: leases of its clients {sorted(affected)}; moved: {sorted(r for r in before if after.get(r) != before[r])}; held again after {time.monotonic() - killed_at:.1f}s")
            await asyncio.sleep(max(0.0, 10.0 - (time.monotonic() - killed_at)))  # a while on two servers
            # the server is started again (what the supervisor's watchdog does) and rejoins
            proc.popen = None
            lab._spawn(proc)
            await lab._wait_ready(proc)
            await eventually(lambda: _rejoined(rl), timeout=90, msg=f"{victim} a current replica of the cloud's streams again")
        await asyncio.gather(*flows)
    finally:
        for f in flows:
            f.cancel()
        await asyncio.gather(*flows, return_exceptions=True)
        await sysbus.close()
    print(f"longest API write (with retries) during the kills: {max(stalls):.1f}s")
    assert max(stalls) < 15.0, f"an API write stalled {max(stalls):.1f}s"

    await eventually(lambda: _synced(rl, fleet, str(ROUNDS)), timeout=90, msg="every node has the latest version of everything")
    changes = [c for c in (await rl.meta.changes(0, 10_000))["changes"] if c["type"] != "STATUS"]
    pairs = [(c["key"], c["sync"]) for c in changes]
    assert len(pairs) == len(set(pairs)), "a downstream message was applied twice on edge-1"
    seen = await eventually(lambda: _edge_up(rl), timeout=90, msg="every upstream message of edge-1 in the cloud")
    assert sorted(seen) == list(range(N_UP)) and set(seen.values()) == {1}, "each upstream message of edge-1 exactly once"
    await eventually(lambda: fleet.unacked() == 0, timeout=60, msg="every hollow forward acknowledged")
    stored = await _hollow_up(rl, hollow)
    for n in hollow:
        assert set(stored[n]) >= set(sent[n]), f"{n}: forwarded messages missing in the cloud"
        assert all(c == 1 for c in stored[n].values()), f"{n}: a forwarded message stored twice"
    stop.set()
    await watcher
    assert not not_ready, f"nodes went NotReady: {sorted(not_ready)}"


async def _rejoined(rl: RunningLab) -> bool:
    for s in (names.STREAM_UP, names.STREAM_DOWN, names.kv_stream(names.BUCKET_LEASES)):
        cl = (await rl.cloud.js().stream_info(s)).cluster
        if cl is None or len(cl.replicas or []) != 2 or not all(r.current for r in cl.replicas or []):
            return False
    return True


async def _servers(sysbus: Bus) -> dict[str, dict[str, Any]]:
    """Every cloud server's connections, leaf links and JetStream state (``$SYS.REQ.SERVER.PING.*``)."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for what in ("connz", "leafz", "jsz"):
        inbox = sysbus.nc.new_inbox()
        sub = await sysbus.nc.subscribe(inbox)
        await sysbus.nc.publish(f"$SYS.REQ.SERVER.PING.{what.upper()}", b"{}", reply=inbox)
        deadline = time.monotonic() + 2.0
        try:
            while len([1 for d in out.values() if what in d]) < 3 and time.monotonic() < deadline:
                try:
                    m = await sub.next_msg(timeout=max(0.05, deadline - time.monotonic()))
                except Exception:
                    break
                r = json.loads(m.data)
                out[r["server"]["name"]][what] = r.get("data") or {}
        finally:
            await sub.unsubscribe()
    return dict(out)


def _proc_of(server: str) -> str:
    k = int(server.rsplit("-", 1)[-1])
    return "cloud/nats" if k == 1 else f"cloud/nats-{k}"


def _service_of(lab: Any, ident: str) -> str | None:
    """The NATS client name of the lab process holding a lease (its identity has its pid)."""
    for name, p in lab.procs.items():
        if p.popen is not None and f"-{p.popen.pid}-" in ident:
            return name.split("/", 1)[1]
    return None


async def _revision(leases: KV, role: str) -> int:
    e = await leases.entry(role)
    return 0 if e is None or e.deleted else e.revision


def _record(h: HollowNode, sent: dict[str, list[int]]) -> None:
    """Note the sequence of every message the hollow node forwards (its upstream)."""
    orig = h.forward

    def forward(kind: str, env: Envelope, ref: names.ObjectRef | None = None) -> None:
        try:
            orig(kind, env, ref)
        finally:
            if kind != names.UP_HEARTBEAT:  # heartbeats may expire in the cloud (their TTL)
                sent[h.name].append(h.seq)

    h.forward = forward  # type: ignore[method-assign]


async def _retry(fn: Any, attempts: int = 100) -> None:
    for _ in range(attempts):
        try:
            await fn()
            return
        except Exception:
            await asyncio.sleep(0.2)
    await fn()


async def _update(rl: RunningLab, i: int, v: str) -> None:
    cur = await rl.store.get(CONFIGMAPS, "default", f"c-{i}")
    cur["data"] = {"v": v}
    await rl.store.update(CONFIGMAPS, cur)


async def _synced(rl: RunningLab, fleet: HollowFleet, v: str) -> bool:
    items = (await rl.meta.list("configmaps"))["items"]
    mine = [i for i in items if i["object"]["metadata"]["name"].startswith("c-")]
    if len(mine) != N_CM or not all(i["object"]["data"] == {"v": v} for i in mine):
        return False
    return all(fleet_cms(fleet, h) == {f"c-{i}": v for i in range(N_CM)} for h in fleet.nodes)


_latest: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)


def fleet_cms(fleet: HollowFleet, node: str) -> dict[str, str]:
    return {k: v for k, (_, v) in _latest[node].items()}


def on_downstream(h: HollowNode, subject: str, env: Envelope) -> None:
    c = env.content
    if env.route.resource == "configmaps" and isinstance(c, dict):
        md = c.get("metadata") or {}
        rv = int(md.get("resourceVersion") or 0)
        name = str(md.get("name") or "")
        if name.startswith("c-") and rv >= _latest[h.name].get(name, (0, ""))[0]:
            _latest[h.name][name] = (rv, str((c.get("data") or {}).get("v")))


async def _holders(leases: KV) -> dict[str, str]:
    entries, _ = await leases.list()
    return {e.key: e.value.decode(errors="replace") for e in entries if not e.deleted and e.value}


def _alive(lab: Any, ident: str) -> bool:
    pids = {p.popen.pid for p in lab.procs.values() if p.popen is not None and p.popen.poll() is None}
    return any(f"-{pid}-" in ident for pid in pids)


async def _edge_up(rl: RunningLab) -> Counter[int] | None:
    seen: Counter[int] = Counter()
    async with aclosing(read_stream(rl.cloud, names.STREAM_UP, names.up_subject("edge-1", names.UP_EVENT), stop_when_caught_up=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            seen[Envelope.decode(m.data).content["n"]] += 1
    return seen if len(seen) >= N_UP else None


async def _hollow_up(rl: RunningLab, hollow: list[str]) -> dict[str, Counter[int]]:
    """Per hollow node: how often each of its forwarded sequences is stored in the cloud."""
    out: dict[str, Counter[int]] = {n: Counter() for n in hollow}
    by_token = {names.encode_token(n): n for n in hollow}
    async with aclosing(read_stream(rl.cloud, names.STREAM_UP, [names.up_filter(n) for n in hollow], stop_when_caught_up=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            node = by_token.get(m.subject.split(".")[2])
            seq = m.headers.get("Edgebus-Up-Seq")
            if node and seq:
                out[node][int(seq)] += 1
    return out

