from __future__ import annotations

import pytest

from edgebus.events import WARNING, EventRecorder
from edgebus.objects import CONFIGMAPS, EVENTS
from edgebus.objectstore import ObjectStore


@pytest.fixture
async def store(bus):
    s = ObjectStore(bus)
    await s.ensure()
    await s.ensure_system_namespaces()
    return s


async def test_repeated_events_aggregate_into_one_object(store: ObjectStore) -> None:
    cm = await store.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}})
    rec = EventRecorder(store, "test-controller", host="cloud-1")
    for _ in range(3):
        await rec.record(cm, WARNING, "Broken", "it broke")
    await rec.record(cm, WARNING, "Broken", "it broke differently")
    events, _ = await store.list(EVENTS, "default")
    by_msg = {e["message"]: e for e in events}
    assert set(by_msg) == {"it broke", "it broke differently"}
    ev = by_msg["it broke"]
    assert ev["count"] == 3 and ev["type"] == "Warning" and ev["reason"] == "Broken"
    assert ev["involvedObject"]["uid"] == cm["metadata"]["uid"] and ev["involvedObject"]["kind"] == "ConfigMap"
    assert ev["source"] == {"component": "test-controller", "host": "cloud-1"}
    assert by_msg["it broke differently"]["count"] == 1


async def test_recording_never_raises(store: ObjectStore) -> None:
    rec = EventRecorder(store, "test-controller")
    # an object in a namespace that does not exist: the event cannot be stored, the caller goes on
    await rec.record({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "nowhere", "uid": "u"}}, WARNING, "X", "y")
    events, _ = await store.list(EVENTS, "nowhere")
    assert events == []
