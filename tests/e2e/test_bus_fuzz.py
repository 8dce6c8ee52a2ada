"""Garbage on every subject a service consumes - random bytes, msgpack of the wrong shape,
oversized payloads - against a running lab: every service stays up (same processes, no
restart), the rejects of every routed subject are in their domain's EDGEBUS_DLQ with a
reason, and the lab's user story passes afterwards."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from contextlib import aclosing
from pathlib import Path

import msgpack
import pytest

from edgebus import names
from edgebus.bus import Bus, BusAuth, CaughtUp, read_stream
from edgebus.envelope import Envelope
from edgebus.identity.node import NodeIdentity
from edgebus.testing.labrun import LabCli

from .test_user_story import test_user_story as user_story

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NODES = ("edge-1", "edge-2")
BIG = 2 << 20


def payloads(rng: random.Random) -> list[bytes]:
    env = Envelope.new(source="fuzz", operation="update", resource="pods", content="not a map", seq=1).encode()
    return [
        rng.randbytes(rng.randrange(1, 300)),
        b"",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"id": 7, "route": "nowhere", "content": [None]}),
        msgpack.packb(2**63),
        env,
        os.urandom(BIG),  # oversized garbage
    ]


def routed_subjects(node: str) -> dict[str, str]:
    """Subjects consumed through a service's router (rejects are dead-lettered), by domain."""
    pod = names.ObjectRef("pods", "default", "fuzz")
    dev = names.ObjectRef("devices", "default", "fuzz")
    return {
        names.down_subject(node, "configmaps", "default", "fuzz"): names.node_domain(node),  # metamanager (via EDGEBUS_DOWN)
        names.outbox_subject(node, names.UP_STATUS, pod): "cloud",  # cloudhub (forwarded), metamanager-status
        names.outbox_subject(node, names.UP_HEARTBEAT): "cloud",
        names.outbox_subject(node, names.UP_STATUS, dev): "cloud",  # devicecontroller
        names.outbox_subject(node, names.UP_EVENT, dev): "cloud",
        names.meta_subject(node, "list"): names.node_domain(node),
        names.meta_subject(node, "get"): names.node_domain(node),
        names.meta_subject(node, "changes"): names.node_domain(node),
        names.edgehub_subject(node, "state"): names.node_domain(node),
        names.edged_subject(node, "state"): names.node_domain(node),
        names.edged_subject(node, "logs"): names.node_domain(node),
        names.edged_subject(node, "exec"): names.node_domain(node),
        names.devicetwin_subject(node, "twins"): names.node_domain(node),
        names.devicetwin_subject(node, "events"): names.node_domain(node),
    }


def raw_subjects(node: str) -> list[str]:
    """Subjects of protocols with their own error replies or none (KubeEdge topics, commit
    events, tunnel frames, link state): garbage there must only never break the service."""
    return [
        names.meta_events_subject(node, "pods"),
        names.meta_events_subject(node, "configmaps"),
        names.meta_events_subject(node, "devices"),
        names.link_subject(node),
        names.mesh_open_subject(node, NODES[-1]),
        names.mesh_subject(node, "state"),
        names.mesh_tunnel_subject(node, NODES[-1], "0123456789abcdef"),
        names.hw_device_subject("default", "thermostat", names.HW_TWIN_UPDATE),
        names.hw_device_subject("default", "thermostat", names.HW_TWIN_GET),
        names.hw_device_subject("default", "thermostat", names.HW_STATE_UPDATE),
        names.hw_node_subject(node, names.HW_MEMBERSHIP_GET),
    ]


async def dead_letters(bus: Bus) -> list[tuple[str, str]]:
    out = []
    async with aclosing(read_stream(bus, names.STREAM_DLQ, names.DLQ_FILTER, stop_when_caught_up=True, headers_only=True)) as it:
        async for m in it:
            if isinstance(m, CaughtUp):
                break
            out.append((m.headers.get("Edgebus-Subject", ""), m.headers.get(names.HDR_ERROR, "")))
    return out


async def fuzz(state: dict) -> tuple[dict[str, list[tuple[str, str]]], int]:
    rng = random.Random(17)
    # as the lab's admin on the cloud and as a node's own local user on each node: the
    # garbage comes from inside the trust boundary, the worst case for a service loop
    cloud = Bus(state["cloud_nats"], name="fuzz-cloud", request_timeout=10, auth=BusAuth(creds_file=state["admin_creds"], ca_file=state["ca_file"]))
    edges = {
        n: Bus(state["nodes"][n]["nats"], name=f"fuzz-{n}", request_timeout=10, auth=BusAuth(nkey_file=str(NodeIdentity(Path(state["nodes"][n]["identity"])).local_nkey_file("edgebus"))), node=n)
        for n in NODES
    }
    sent = 0
    try:
        for b in (cloud, *edges.values()):
            await b.connect(retry_for=10)
        await cloud.publish(names.JOIN_SUBJECT, b"\xff" * 10)
        await cloud.publish(names.api_node_subject(NODES[0]), msgpack.packb({"method": 5}))
        for node, bus in edges.items():
            for subject in (*routed_subjects(node), *raw_subjects(node)):
                for data in payloads(rng):
                    if subject.startswith("edgebus.down."):
                        await cloud.js_publish(subject, data, stream=names.STREAM_DOWN)
                    elif subject.startswith("edgebus.outbox."):
                        await bus.js_publish(subject, data, stream=names.STREAM_EDGE_UP)
                    else:
                        await bus.publish(subject, data)
                    sent += 1
            await bus.flush()
        # the KV a controller follows: a garbage entry is skipped, then removed via the API
        await cloud.js_publish(names.kv_subject(names.BUCKET_OBJECTS, names.object_key("configmaps", "default", "fuzz-kv")), os.urandom(100), stream=names.kv_stream(names.BUCKET_OBJECTS))

        async def missing() -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
            got = {"cloud": await dead_letters(cloud), **{n: await dead_letters(b) for n, b in edges.items()}}
            out = []
            for node in NODES:
                for subject, domain in routed_subjects(node).items():
                    want = subject.replace("edgebus.outbox.", "edgebus.up.") if domain == "cloud" else subject
                    if not any(s == want for s, _ in got[domain]):
                        out.append(f"{want} (in {domain})")
            return got, out

        for _ in range(120):
            got, absent = await missing()
            if not absent:
                return got, sent
            await asyncio.sleep(0.5)
        raise AssertionError(f"rejects of these subjects are not in their dead-letter streams: {absent}; there: {sorted({s for v in got.values() for s, _ in v})}")
    finally:
        for b in (cloud, *edges.values()):
            await b.close()


def test_garbage_on_every_subject_leaves_every_service_up(lab: LabCli, tmp_path: Path) -> None:
    # every running process (a mapper or edgemesh runs only while the node needs it)
    before = {p["name"]: p["pid"] for p in lab.state()["processes"] if p["pid"]}
    assert len(before) >= 10, before
    dlq, sent = asyncio.run(fuzz(lab.state()))
    for domain, letters in dlq.items():
        assert all(reason for _, reason in letters), f"a dead letter in {domain} without its reason"
        for subject, _ in letters:
            own = subject.startswith(("edgebus.up.", "$KV.", "edgebus.api.", "edgebus.hub.")) if domain == "cloud" else f".{domain}." in subject or subject.startswith("$hw.")
            assert own, f"{domain}'s dead letters hold {subject}, which another domain consumes"
    print(f"\n{sent} garbage messages; dead letters: {Counter({d: len(v) for d, v in dlq.items()})}")
    after = {p["name"]: p["pid"] for p in lab.state()["processes"]}
    assert {n: after.get(n) for n in before} == before, f"processes died: {[n for n in before if before[n] != after.get(n)]}"
    # the garbage KV entry is reported, and deletable through the API
    err = lab.run("get", "configmap", "fuzz-kv", check=False)
    assert err.returncode != 0
    lab.run("delete", "configmap", "fuzz-kv")
    user_story(lab, tmp_path)  # (it stops and starts edge-1)
    kept = {n: pid for n, pid in before.items() if not n.startswith("edge-1/")}
    assert {p["name"]: p["pid"] for p in lab.state()["processes"] if p["name"] in kept} == kept
