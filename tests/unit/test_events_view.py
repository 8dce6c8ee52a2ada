"""events.k8s.io/v1 Events are a view of the stored core/v1 Events (pure conversions)."""

from __future__ import annotations

from edgebus.objects import eventsv1

CORE = {
    "apiVersion": "v1",
    "kind": "Event",
    "metadata": {"name": "p.1", "namespace": "default"},
    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default", "uid": "u"},
    "reason": "Scheduled",
    "message": "Successfully assigned default/p to edge-1",
    "type": "Normal",
    "source": {"component": "default-scheduler"},
    "reportingComponent": "default-scheduler",
    "reportingInstance": "default-scheduler",
    "firstTimestamp": "2026-01-01T00:00:00Z",
    "lastTimestamp": "2026-01-01T00:00:05Z",
    "eventTime": "2026-01-01T00:00:00.000000Z",
    "count": 2,
    "action": "Binding",
}


def test_round_trip() -> None:
    v1 = eventsv1.to_v1(CORE)
    assert v1["apiVersion"] == "events.k8s.io/v1"
    assert v1["regarding"] == CORE["involvedObject"] and v1["note"] == CORE["message"] and v1["reportingController"] == "default-scheduler"
    assert v1["deprecatedCount"] == 2 and v1["deprecatedLastTimestamp"] == "2026-01-01T00:00:05Z" and v1["deprecatedSource"] == {"component": "default-scheduler"}
    assert "involvedObject" not in v1 and "message" not in v1
    assert eventsv1.to_core(v1) == CORE


def test_field_selectors_are_spelled_on_the_stored_fields() -> None:
    assert eventsv1.field_selector("regarding.name=p,reason=Scheduled") == "involvedObject.name=p,reason=Scheduled"
    assert eventsv1.field_selector("reportingController!=x") == "reportingComponent!=x"
    assert eventsv1.field_selector("source=kubelet", view=False) == "source.component=kubelet"
    assert eventsv1.field_selector("involvedObject.uid=u", view=False) == "involvedObject.uid=u"
    assert eventsv1.field_selector(None) is None
