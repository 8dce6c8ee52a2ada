"""The cloud as a 3-server NATS cluster (operator mode, full resolvers, JetStream R3): what
edgebus relies on when one server dies.

* streams and KV buckets a clustered connection creates have 3 replicas, and keep every
  message when the server that led them is killed;
* an account update (``$SYS.REQ.CLAIMS.UPDATE``: how cloudhub pushes revocations) reaches
  every server's resolver, and a server that was down when it was pushed has it once it
  rejoins;
* a stream reader whose (single-replica) consumer lived on the killed server carries on from
  where it was, nothing skipped or read twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgebus.bus import Bus, BusAuth, CaughtUp, StreamSpec, ensure_stream, read_stream
from edgebus.bus.errors import NotConnected
from edgebus.bus.kv import KV
from edgebus.identity.natsjwt import read_creds
from edgebus.testing.servers import HubCluster, start_hub_cluster
from edgebus.testing.waiting import eventually

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[HubCluster]:
    c = start_hub_cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


async def _js_ready(bus: Bus) -> bool:
    try:
        await ensure_stream(bus, StreamSpec("PROBE", subjects=("probe.>",), replicas=3))
        return True
    except Exception:
        return False


async def _leader(bus: Bus, stream: str) -> str:
    info = await bus.js().stream_info(stream)
    assert info.cluster is not None
    return str(info.cluster.leader)


async def test_streams_and_buckets_are_r3_and_survive_their_leader(hubs: HubCluster) -> None:
    bus = hubs.bus("t")
    await bus.connect(retry_for=10)
    try:
        await eventually(lambda: _js_ready(bus), timeout=30, msg="JetStream cluster ready")
        await ensure_stream(bus, StreamSpec("WORK", subjects=("work.>",)))  # asks for 1
        kv = KV(bus, "cfg")
        await kv.ensure()
        for name in ("WORK", "KV_cfg"):
            info = await bus.js().stream_info(name)
            assert info.config.num_replicas == 3, name
        for i in range(50):
            await bus.js_publish(f"work.{i}", str(i).encode(), stream="WORK")
            await kv.put(f"k{i % 5}", str(i).encode())
        leader = await _leader(bus, "WORK")
        k = next(i for i, s in enumerate(hubs.servers) if s.config.name == leader)
        hubs.kill(k)

        async def more() -> bool:
            try:
                await bus.js_publish("work.50", b"50", stream="WORK")
                return True
            except Exception:
                return False

        await eventually(more, timeout=30, msg="a new leader takes writes")
        assert await _leader(bus, "WORK") != leader
        info = await bus.js().stream_info("WORK")
        assert info.state.messages == 51
        assert (await kv.get("k4")) is not None and (await kv.get("k4")).value == b"49"  # type: ignore[union-attr]
        hubs.start(k)

        async def caught_up() -> bool:
            info = await bus.js().stream_info("WORK")
            return all(r.current for r in (info.cluster.replicas or [])) and len(info.cluster.replicas or []) == 2  # type: ignore[union-attr]

        await eventually(caught_up, timeout=60, msg="the restarted server is a current replica again")
    finally:
        await bus.close()


async def _refused(url: str, creds: str, ca: str) -> bool:
    b = Bus(url, name="victim", auth=BusAuth(creds_file=creds, ca_file=ca))
    try:
        await b.connect(retry_for=1.5)
    except NotConnected:
        return True
    await b.close()
    return False


async def test_an_account_update_reaches_every_server_also_one_that_was_down(hubs: HubCluster) -> None:
    victim = str(hubs.pki.issue_user_creds("victim"))
    other = str(hubs.pki.issue_user_creds("other"))
    ca = str(hubs.pki.ca_file)
    for url in hubs.urls:
        assert not await _refused(url, victim, ca)
    hubs.kill(2)  # down while the update is pushed
    sysbus = Bus(hubs.urls[:2], name="sys", auth=BusAuth(creds_file=hubs.system_creds, ca_file=ca))
    await sysbus.connect(retry_for=10)
    try:
        _, key = read_creds(Path(victim).read_text())
        jwt = hubs.pki.account_jwt({key.public: int(time.time()) + 1})
        await asyncio.sleep(1.1)  # the revocation covers credentials issued before it
        await sysbus.request("$SYS.REQ.CLAIMS.UPDATE", jwt.encode(), timeout=5)
        for url in hubs.urls[:2]:
            await eventually(lambda url=url: _refused(url, victim, ca), timeout=15, msg=f"{url} refuses the revoked user")
            assert not await _refused(url, other, ca)
        hubs.start(2)
        await eventually(lambda: _refused(hubs.urls[2], victim, ca), timeout=60, msg="the restarted server has the update")
        assert not await _refused(hubs.urls[2], other, ca)
    finally:
        await sysbus.close()


async def test_a_reader_whose_consumer_was_on_the_killed_server_carries_on(hubs: HubCluster) -> None:
    pub = hubs.bus("pub")
    await pub.connect(retry_for=10)
    await eventually(lambda: _js_ready(pub), timeout=30, msg="JetStream cluster ready")
    await ensure_stream(pub, StreamSpec("FEED", subjects=("feed.>",)))
    readers: dict[int, Bus] = {}
    for k in range(3):  # a reader on every server: one of them holds a consumer on each
        readers[k] = hubs.bus(f"r{k}")
        await readers[k].connect(retry_for=10)

    async def read(k: int, out: list[int]) -> None:
        async for m in read_stream(readers[k], "FEED", "feed.>"):
            if not isinstance(m, CaughtUp):
                out.append(int(m.data))

    outs: dict[int, list[int]] = {k: [] for k in range(3)}
    tasks = [asyncio.create_task(read(k, outs[k])) for k in range(3)]
    try:
        for i in range(20):
            await pub.js_publish(f"feed.{i}", str(i).encode(), stream="FEED")
        await eventually(lambda: all(len(o) == 20 for o in outs.values()), timeout=20, msg="all read")
        infos = await pub.js().consumers_info("FEED")
        holder = str(infos[0].cluster.leader)  # type: ignore[union-attr]
        assert all(i.config.num_replicas in (None, 0, 1) for i in infos)
        hubs.kill(next(k for k, s in enumerate(hubs.servers) if s.config.name == holder))
        for i in range(20, 40):
            for _ in range(100):
                try:
                    await pub.js_publish(f"feed.{i}", str(i).encode(), stream="FEED")
                    break
                except Exception:
                    await asyncio.sleep(0.2)
        await eventually(lambda: all(len(o) >= 40 for o in outs.values()), timeout=40, msg="every reader has every message")
        for o in outs.values():
            assert o == list(range(40))  # nothing skipped, nothing twice
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for b in (pub, *readers.values()):
            await b.close()
