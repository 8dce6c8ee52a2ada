"""Isolation, enforced by nats-server: a real lab of two nodes, and an attacker holding node
edge-1's credential (its JWT, nkey seed and link certificate, as stolen from its disk) who
speaks the leafnode protocol by hand. Everything outside edge-1's own subjects is refused by
the server, and nothing reaches edge-2 or the cloud's streams."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgebus import names
from edgebus.bus import Bus, BusAuth, BusError, read_stream
from edgebus.bus.consumer import CaughtUp
from edgebus.testing.rawleaf import RawLeaf
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab

pytestmark = pytest.mark.e2e

A, B = "edge-1", "edge-2"


@pytest.fixture
async def lab2(tmp_path: Path):
    rl = await start_lab(tmp_path, proxy=False, nodes=2, containerd=False)
    try:
        yield rl
    finally:
        await stop_lab(rl)


async def attacker(rl: RunningLab, *, creds: bool = True, cert: bool = True) -> RawLeaf:
    plan = rl.lab.plan
    ident = plan.node_identity(A)
    return await RawLeaf.connect(
        plan.host,
        plan.cloud_leaf_port,
        creds=str(ident.creds_file) if creds else None,
        ca_file=str(ident.ca_file),
        cert_file=str(ident.link_cert_file) if cert else None,
        key_file=str(ident.link_key_file) if cert else None,
    )


async def stream_holds(bus: Bus, stream: str, marker: bytes, domain: str | None = None) -> bool:
    async for m in read_stream(bus, stream, [], domain=domain, stop_when_caught_up=True):
        if isinstance(m, CaughtUp):
            return False
        if marker in m.data:
            return True
    return False


async def test_a_node_credential_reaches_only_its_own_subjects(lab2: RunningLab) -> None:
    rl = lab2
    plan = rl.lab.plan
    marker = f"attack-{uuid.uuid4().hex}".encode()  # what the attacker sends
    bait = f"bait-{uuid.uuid4().hex}".encode()  # what the cloud sends where the attacker listens
    spy_b = plan.node_bus(B, "spy-on-b")  # what arrives on edge-2's own server
    await spy_b.connect(retry_for=10)
    seen_on_b: list[str] = []

    async def on_b(m) -> None:  # type: ignore[no-untyped-def]
        if marker in m.data:
            seen_on_b.append(m.subject)

    await spy_b.subscribe(">", on_b)
    await spy_b.flush()

    # -- subscriptions: interest in anything but edge-1's subjects delivers nothing ---------
    leaf = await attacker(rl)
    forbidden_subs = [names.node_filter(B), "$KV.>", names.kv_subject_prefix(names.BUCKET_OBJECTS) + ">", ">", names.down_filter(), names.up_filter(B), names.deliver_filter(B), names.reply_filter(B)]
    for s in [*forbidden_subs, names.node_filter(A)]:
        await leaf.subscribe(s)
    await leaf.ping()
    await asyncio.sleep(1.0)  # interest reaches the hub
    for subj in (f"{names.node_filter(B)[:-2]}.edged.exec", names.kv_subject(names.BUCKET_OBJECTS, "secrets.default.x"), names.down_subject(B, "secrets", "default", "x"), f"{names.reply_prefix(B)}.x", f"{names.node_filter(A)[:-2]}.probe"):
        await rl.cloud.publish(subj, bait)
    await rl.cloud.flush()
    await eventually(lambda: any(m.subject == f"{names.node_filter(A)[:-2]}.probe" for m in leaf.messages), timeout=10, msg="the attacker's own subject delivered (control)")
    assert [m.subject for m in leaf.messages if bait in m.data] == [f"{names.node_filter(A)[:-2]}.probe"], "only edge-1's own subject reaches edge-1's credential"
    # a Secret the cloud stores passes through the objects bucket: its KV traffic never reaches the node
    assert not [m for m in leaf.messages if m.subject.startswith("$KV")]
    await leaf.close()

    # -- publications outside edge-1's own: the server refuses each and closes the link ------
    forbidden_pubs = [
        f"{names.node_filter(B)[:-2]}.edged.exec",  # run a command in edge-2's pods
        names.meta_subject(B, "list"),  # read edge-2's store
        names.API_NODE_FILTER.replace("*", "edge-3"),  # the API as a node that is not edge-1
        names.api_node_subject(B),  # the API as edge-2
        names.down_subject(B, "pods", "default", "evil"),  # desired state
        names.down_subject(A, "pods", "default", "evil"),  # even its own
        names.up_subject(B, names.UP_HEARTBEAT),  # forge edge-2's heartbeat
        names.outbox_subject(B, names.UP_HEARTBEAT),
        names.JOIN_SUBJECT,  # the join relay
        names.hub_node_subject(B, "renew"),  # edge-2's certificate
        f"{names.js_api_prefix('cloud')}.STREAM.DELETE.{names.STREAM_UP}",
        f"{names.js_api_prefix('cloud')}.STREAM.MSG.GET.{names.kv_stream(names.BUCKET_OBJECTS)}",
        f"{names.js_api_prefix('cloud')}.CONSUMER.CREATE.{names.STREAM_DOWN}.x.{names.down_filter(B)}",
        f"{names.js_api_prefix('cloud')}.CONSUMER.CREATE.{names.STREAM_DOWN}",
        f"{names.js_api_prefix(names.node_domain(B))}.STREAM.INFO.{names.STREAM_EDGE_DOWN}",
        names.mesh_open_subject(B, "edge-3"),  # a tunnel in another node's name
        "_INBOX.anything",
    ]
    for subj in forbidden_pubs:
        leaf = await attacker(rl)
        await leaf.publish(subj, marker, reply=f"{names.inbox_prefix(A)}.r")
        await leaf.ping()
        await asyncio.wait_for(leaf.closed.wait(), 10)
        # (the server names a JetStream API subject as it maps it into its own domain)
        shown = {f'"{subj}"', f'"{subj.replace("$JS.cloud.API.", "$JS.API.")}"'}
        assert any("Permissions Violation for Publish" in e and any(x in e for x in shown) for e in leaf.errors), (subj, leaf.errors)
        await leaf.close()

    # nothing arrived on edge-2 and nothing was stored in the cloud
    await asyncio.sleep(0.5)
    assert seen_on_b == []
    for stream in (names.STREAM_UP, names.STREAM_DOWN, names.kv_stream(names.BUCKET_OBJECTS)):
        assert not await stream_holds(rl.cloud, stream, marker), stream
    await spy_b.close()

    # -- the credential is for leaf links only: a plain client with it is refused --------------
    ident = plan.node_identity(A)
    plain = Bus(plan.cloud_nats_url, name="stolen", auth=BusAuth(creds_file=str(ident.creds_file), ca_file=plan.ca_file))
    with pytest.raises(BusError):
        await plain.connect(retry_for=2)

    # -- meanwhile edge-1's real link kept working: its heartbeats still arrive ---------------
    assert await rl.node_ready(A) and await rl.node_ready(B)


async def test_every_listener_refuses_anonymous_access(lab2: RunningLab) -> None:
    rl = lab2
    plan = rl.lab.plan
    # the cloud's client port: no credential, or TLS without one
    for auth in (BusAuth(ca_file=plan.ca_file), BusAuth()):
        with pytest.raises(BusError):
            await Bus(plan.cloud_nats_url, name="anon", auth=auth).connect(retry_for=2)
    # the leafnode port: without a link certificate the TLS handshake fails; with one but no JWT, authentication does
    no_cert = await attacker(rl, cert=False)
    await asyncio.wait_for(no_cert.closed.wait(), 10)
    await no_cert.close()
    no_jwt = await attacker(rl, creds=False)
    await asyncio.wait_for(no_jwt.closed.wait(), 10)
    assert any("Authorization Violation" in e for e in no_jwt.errors), no_jwt.errors
    await no_jwt.close()
    # a node's own server: its clients need a credential too
    with pytest.raises(BusError):
        await Bus(plan.node_nats_url(A), name="anon").connect(retry_for=2)
    # MQTT on the node: anonymous and wrong passwords are refused, a mapper's login works
    cred = plan.node_identity(A).mapper("modbus")
    for user, pw, ok in ((None, None, False), (cred.user, "wrong", False), (cred.user, cred.password, True)):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}")
        if user:
            c.username_pw_set(user, pw)
        try:
            rc = c.connect(plan.host, plan.node_mqtt_port(A), 5)
            c.loop_start()
            await eventually(lambda c=c: c.is_connected() or not ok, timeout=5, msg="mqtt connect")
            await asyncio.sleep(0.5)
            assert c.is_connected() is ok, (user, pw, rc)
        finally:
            c.loop_stop()
            c.disconnect()
