"""Reports are ordered by the node's outbox sequence, not by the edge's clock."""

from __future__ import annotations

from pathlib import Path

from edgebus import names
from edgebus.order import UpOrder
from services.cloudhub import logic as hub
from services.devicecontroller import logic as dev
from services.metamanager.store import MetaStore


def test_up_order_from_headers_and_back() -> None:
    o = UpOrder.from_headers({names.HDR_UP_SEQ: "12", names.HDR_UP_EPOCH: "2026-01-01T00:00:00Z"})
    assert o == UpOrder("2026-01-01T00:00:00Z", 12) and UpOrder.parse(str(o)) == o
    assert UpOrder.from_headers({}) is None and UpOrder.from_headers({names.HDR_UP_SEQ: "x", names.HDR_UP_EPOCH: "e"}) is None
    assert UpOrder.parse("garbage") is None and UpOrder.parse(None) is None
    assert o.newer_than(None) is None
    assert o.newer_than(UpOrder(o.epoch, 11)) and not o.newer_than(UpOrder(o.epoch, 12))
    assert o.newer_than(UpOrder("another outbox", 99)), "a re-created outbox starts over"


def test_cloudhub_orders_by_outbox_when_both_reports_carry_it() -> None:
    node: dict = {"metadata": {}}
    later, earlier = UpOrder("e", 11), UpOrder("e", 10)
    assert hub.report_is_newer(node, 100, "edgehub", later)
    hub.stamp(node, 100, "edgehub", later)
    assert not hub.report_is_newer(node, 10**19, "edgehub", earlier), "a newer edge time does not make it newer"
    assert hub.report_is_newer(node, 1, "edgehub", UpOrder("e", 12)), "an older edge time does not make it stale"
    assert hub.report_is_newer(node, 1, "edged", earlier), "each reporter has its own order"
    assert not hub.report_is_newer(node, 50, "edgehub"), "without an order: by edge time"


def test_device_twins_follow_the_outbox_order() -> None:
    d: dict = {"metadata": {"name": "d"}, "status": {}}
    r = lambda v, ts: {"twins": {"temp": {"reported": {"value": v, "ts": ts}}}}  # noqa: E731
    assert dev.merge_report(d, r("21", 2_000), order=UpOrder("e", 5))
    assert not dev.merge_report(d, r("99", 9_000), order=UpOrder("e", 4)), "processed late: stale"
    assert dev.merge_report(d, r("22", 1_000), order=UpOrder("e", 6)), "the edge clock went back: still newer"
    assert d["status"]["twins"][0]["reported"]["value"] == "22"
    plain: dict = {"metadata": {"name": "d"}, "status": {}}
    dev.merge_report(plain, r("21", 2_000))
    assert not dev.merge_report(plain, r("20", 1_000)), "without an order: by timestamp, as before"


async def test_local_pod_status_follows_the_outbox_order(tmp_path: Path) -> None:
    ms = MetaStore(tmp_path / "mm")
    try:
        key = "/core/v1/pods/default/p"
        rep = lambda t, phase, seq: (key, "pods", "default", "p", t, {"phase": phase}, seq)  # noqa: E731
        await ms.apply_status([rep(5_000, "Pending", 1)], epoch="e1")
        await ms.apply_status([rep(1_000, "Running", 2)], epoch="e1")  # the clock went back
        assert ms.status.get(key)["status"] == {"phase": "Running"}
        await ms.apply_status([rep(9_000, "Failed", 1)], epoch="e1")  # a stale redelivery
        assert ms.status.get(key)["status"] == {"phase": "Running"}
        await ms.apply_status([rep(1, "Succeeded", 1)], epoch="e2")  # a re-created outbox
        assert ms.status.get(key)["status"] == {"phase": "Succeeded"}
    finally:
        ms.close()
