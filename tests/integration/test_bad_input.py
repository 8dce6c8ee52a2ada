"""Bad input never kills a service loop: it is rejected with a clear reason, recorded on
the dead-letter stream, and the good messages around it are still processed."""

from __future__ import annotations

import time
from contextlib import aclosing

import msgpack

from edgebus import names
from edgebus.bus import Bus, CaughtUp, RemoteError, read_stream
from edgebus.envelope import Envelope
from edgebus.metaclient import MetaClient
from edgebus.objects import CONFIGMAPS, NODES, PODS
from edgebus.testing.servers import bus_for
from edgebus.testing.waiting import eventually


async def dead_letters(bus: Bus, domain: str | None = None) -> list[tuple[str, str]]:
    """(original subject, reason) of every message on a domain's dead-letter stream."""
    out = []
    async with aclosing(read_stream(bus, names.STREAM_DLQ, names.DLQ_FILTER, domain=domain, stop_when_caught_up=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            out.append((m.headers.get("Edgebus-Subject", ""), m.headers.get(names.HDR_ERROR, "")))
    return out


def down_env(op: str, content, seq: int) -> Envelope:
    return Envelope.new(source="intruder", operation=op, resource="configmaps", content=content, seq=seq)


async def test_malformed_downstream_messages_are_recorded_and_skipped(mesh) -> None:
    store, bus, _ = mesh
    leaf_bus = bus_for(mesh[2][2].settings, "test-edge")  # metamanager's server
    await leaf_bus.connect(retry_for=5)
    mc = MetaClient(leaf_bus, "edge-1")
    try:
        await store.create(CONFIGMAPS, {"metadata": {"name": "good", "namespace": "default"}, "data": {"a": "1"}})
        await store.create(PODS, {"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}], "volumes": [{"name": "v", "configMap": {"name": "good"}}]}})
        await eventually(lambda: _keys(mc, {"/core/v1/configmaps/default/good"}), msg="good object on the edge")

        subj = lambda name: names.down_subject("edge-1", "configmaps", "default", name)  # noqa: E731
        bad = [
            (subj("garbage"), b"\x00\xffnot msgpack"),
            (subj("list"), msgpack.packb([1, 2, 3])),
            (subj("noseq"), down_env("update", {"metadata": {"name": "noseq", "namespace": "default"}}, 0).encode()),
            (subj("wrongname"), down_env("update", {"metadata": {"name": "other", "namespace": "default"}}, 10**9).encode()),
            (subj("badop"), down_env("explode", {}, 10**9).encode()),
            (subj("notamap"), down_env("update", "just a string", 10**9).encode()),
            (names.down_subject("edge-1", "widgets", "default", "w"), down_env("update", {}, 10**9).encode()),
        ]
        for s, data in bad:
            await bus.js_publish(s, data, stream=names.STREAM_DOWN)
        rejected = await eventually(lambda: _dlq_has(leaf_bus, len(bad)), timeout=15, msg="every bad message dead-lettered")
        reasons = dict(rejected)
        assert "not msgpack" in reasons[subj("garbage")]
        assert "must be a map" in reasons[subj("list")]
        assert "no sync version" in reasons[subj("noseq")]
        assert "does not match the subject" in reasons[subj("wrongname")]
        assert "unsupported operation" in reasons[subj("badop")]
        assert "must be an object" in reasons[subj("notamap")]
        assert "unknown resource" in reasons[names.down_subject("edge-1", "widgets", "default", "w")]

        # the loop is alive: a later change still arrives, and nothing bad was stored
        cur = await store.get(CONFIGMAPS, "default", "good")
        cur["data"] = {"a": "2"}
        await store.update(CONFIGMAPS, cur)
        await eventually(lambda: _value(mc, "good", {"a": "2"}), msg="later update applied")
        keys = {i["key"] for i in (await mc.list())["items"]} - {"/core/v1/nodes/_/edge-1"}  # (and its own Node)
        assert keys == {"/core/v1/configmaps/default/good", "/core/v1/pods/default/p"}
    finally:
        await leaf_bus.close()


async def test_malformed_upstream_messages_are_recorded_and_skipped(mesh) -> None:
    store, bus, svcs = mesh
    leaf_bus = bus_for(svcs[2].settings, "test-edge")
    await leaf_bus.connect(retry_for=5)
    try:
        outbox = lambda kind, ref=None: names.outbox_subject("edge-1", kind, ref)  # noqa: E731
        ref_other_node = names.ObjectRef("nodes", None, "edge-2")
        bad = [
            (outbox(names.UP_HEARTBEAT), b"\x01garbage"),
            (outbox(names.UP_HEARTBEAT), Envelope.new(source="x", operation="keepalive", content={"time": "yesterday"}).encode()),
            (outbox(names.UP_STATUS, ref_other_node), Envelope.new(source="x", operation="update", content={"time": time.time_ns(), "status": {}}).encode()),
            (outbox("teleport"), Envelope.new(source="x", operation="update", content={}).encode()),
        ]
        for s, data in bad:
            await leaf_bus.js_publish(s, data, stream=names.STREAM_EDGE_UP)
        rejected = await eventually(lambda: _dlq_has(bus, len(bad)), timeout=15, msg="cloudhub dead-lettered every bad message")
        reasons = [r for _, r in rejected]
        assert any("not msgpack" in r for r in reasons)
        assert any("integer 'time'" in r for r in reasons)
        assert any("may not report the status of node edge-2" in r for r in reasons)
        assert any("unknown upstream kind" in r for r in reasons)
        # cloudhub still ingests: a fresh node status report lands
        env = Envelope.new(source="test", operation="update", content={"time": time.time_ns(), "status": {"capacity": {"pods": "7"}}})
        await leaf_bus.js_publish(outbox(names.UP_STATUS, names.ObjectRef("nodes", None, "edge-1")), env, stream=names.STREAM_EDGE_UP)
        await eventually(lambda: _capacity(store, "7"), timeout=15, msg="valid status after the bad ones")
    finally:
        await leaf_bus.close()


async def test_bad_requests_get_error_replies(mesh) -> None:
    _, bus, _ = mesh
    await eventually(lambda: _answers(bus), msg="metamanager reachable from the cloud")
    reply = await bus.request(names.meta_subject("edge-1", "list"), b"garbage", timeout=5)
    err = Envelope.decode(reply.data)
    assert err.route.operation == "error" and err.content["code"] == 400
    try:
        await bus.call(names.meta_subject("edge-1", "get"), Envelope.new(source="t", operation="query", content={"resource": "widgets", "name": "x"}))
    except RemoteError as exc:
        assert exc.code == 404 and "widgets" in str(exc)
    else:
        raise AssertionError("expected an error reply")
    # and it still answers good requests
    assert "items" in (await MetaClient(bus, "edge-1").list())


async def _answers(bus: Bus) -> bool:
    try:
        await MetaClient(bus, "edge-1").stats()
        return True
    except Exception:
        return False


async def _keys(mc: MetaClient, want: set[str]) -> bool:
    return want <= {i["key"] for i in (await mc.list())["items"]}


async def _value(mc: MetaClient, name: str, data: dict) -> bool:
    got = (await mc.get("configmaps", "default", name))["object"]
    return got.get("data") == data


async def _dlq_has(bus: Bus, n: int):
    d = await dead_letters(bus)
    return d if len(d) >= n else None


async def _capacity(store, pods: str) -> bool:
    n = await store.get(NODES, None, "edge-1")
    return (n.get("status", {}).get("capacity") or {}).get("pods") == pods
