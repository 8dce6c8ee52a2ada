"""A node's desired state pulled from its durable consumer on the cloud's EDGEBUS_DOWN: the
consumer is made once (here by the node's first link: its identity was issued directly, not
joined through cloudhub), and a reconnect — link cut and healed — makes no consumer through
the hub's JetStream API; updates made while the node is offline arrive after the outage,
each version stored once, collapsed to the latest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgebus import names, topology
from edgebus.bus import Bus, stream_state
from edgebus.envelope import Envelope
from edgebus.testing.servers import Cluster, start_leaf
from edgebus.testing.services import build_service
from edgebus.testing.waiting import eventually

NODE = "edge-1"


async def _state(edge: Bus) -> dict[str, Any]:
    env = Envelope.new(source="test", operation="query", content={})
    return (await edge.call(names.edgehub_subject(NODE, "state"), env)).content


async def _held(edge: Bus, name: str) -> bytes | None:
    from edgebus.bus import get_last

    m = await get_last(edge, names.STREAM_EDGE_DOWN, names.down_subject(NODE, "configmaps", "default", name))
    return m.data if m else None


@pytest.mark.timeout(240)
async def test_reconnects_make_no_consumer_and_offline_updates_arrive_once(cluster: Cluster, tmp_path: Path) -> None:
    hub = cluster.hub
    leaf = cluster.leaves[NODE] = start_leaf(tmp_path, hub, NODE, via_proxy=True)
    assert leaf.proxy is not None
    cloud = hub.bus("test")
    await cloud.connect(retry_for=10)
    await topology.ensure_cloud_streams(cloud)
    api_calls: list[str] = []

    async def count(m: Any) -> None:
        if (m.reply or "").startswith(names.inbox_prefix(NODE)):  # the node's, not this test's
            api_calls.append(m.subject)

    # every consumer-management request that reaches the hub's JetStream API (the hub maps a
    # node's $JS.cloud.API.> here); pulls (CONSUMER.MSG.NEXT) are not API requests
    subs = [await cloud._nc.subscribe(f"$JS.API.CONSUMER.{verb}.>", cb=count) for verb in ("CREATE", "DURABLE", "INFO", "DELETE")]
    svc = build_service(
        "edgehub",
        node=NODE,
        nats=leaf.nats_settings("edgehub"),
        edgehub={"system_nkey_file": str(leaf.identity.local_nkey_file("system")), "link_check_interval": 0.2, "down_pull_expires": 5.0},
    )
    edge = leaf.bus("test")
    await svc.start()
    await edge.connect(retry_for=10)
    try:
        subject = names.down_subject(NODE, "configmaps", "default", "a")
        await cloud.js_publish(subject, b"v1", stream=names.STREAM_DOWN)
        await eventually(lambda: _held(edge, "a"), timeout=60, msg="v1 on the node")
        assert await _held(edge, "a") == b"v1"
        st = await _state(edge)
        assert st["downstream"]["consumerCreates"] == 1, "the node made its consumer once (no join made it)"
        assert api_calls == [f"$JS.API.CONSUMER.INFO.{names.STREAM_DOWN}.{NODE}", f"$JS.API.CONSUMER.CREATE.{names.STREAM_DOWN}.{NODE}.{names.down_filter(NODE)}"], api_calls
        consumer = await cloud.js().consumer_info(names.STREAM_DOWN, names.down_consumer(NODE))
        created = consumer.created
        assert consumer.config.durable_name == names.down_consumer(NODE) and not consumer.config.inactive_threshold

        for round_ in range(2):
            api_calls.clear()
            leaf.proxy.cut()
            await eventually(lambda: _state_is(edge, "down"), timeout=30, msg="link down")
            # while offline: two versions of one object, one new object
            await cloud.js_publish(subject, f"v{2 + 2 * round_}".encode(), stream=names.STREAM_DOWN)
            await cloud.js_publish(subject, f"v{3 + 2 * round_}".encode(), stream=names.STREAM_DOWN)
            await cloud.js_publish(names.down_subject(NODE, "configmaps", "default", f"b{round_}"), b"new", stream=names.STREAM_DOWN)
            leaf.proxy.heal()
            await eventually(lambda: _state_is(edge, "up"), timeout=60, msg="link up again")
            want = f"v{3 + 2 * round_}".encode()
            await eventually(lambda: _is(edge, "a", want), timeout=60, msg=f"{want!r} on the node after the outage")
            await eventually(lambda: _is(edge, f"b{round_}", b"new"), timeout=60, msg="the object made while offline")
            assert api_calls == [], f"the reconnect called the hub's JetStream consumer API: {api_calls}"

        st = await _state(edge)
        assert st["downstream"]["consumerCreates"] == 1
        assert st["downstream"]["pulled"] == 5, f"each stored version pulled once, collapsed while offline: {st['downstream']}"
        local = await stream_state(edge, names.STREAM_EDGE_DOWN)
        assert local.messages == 3, "one message per object"
        info = await cloud.js().consumer_info(names.STREAM_DOWN, names.down_consumer(NODE))
        assert info.created == created, "the same consumer across both outages"

        async def all_acked() -> bool:  # (acknowledgements follow the local store)
            i = await cloud.js().consumer_info(names.STREAM_DOWN, names.down_consumer(NODE))
            return (i.num_pending or 0) == 0 and (i.num_ack_pending or 0) == 0

        # a delivery lost with the link (to a pull made before the cut) comes again after the
        # consumer's ack wait, and is skipped as already held
        await eventually(all_acked, timeout=topology.DOWN_ACK_WAIT + 30, msg="everything acknowledged")
        st = await _state(edge)
        assert st["downstream"]["pulled"] == 5, st["downstream"]
        down = await cloud.js().stream_info(names.STREAM_DOWN)
        assert down.state.messages == 3, "nothing the node stored locally crossed back to the cloud"
    finally:
        for s in subs:
            await s.unsubscribe()
        await edge.close()
        await svc.stop()
        await cloud.close()


async def _state_is(edge: Bus, link: str) -> bool:
    return (await _state(edge))["link"] == link


async def _is(edge: Bus, name: str, want: bytes) -> bool:
    return await _held(edge, name) == want
