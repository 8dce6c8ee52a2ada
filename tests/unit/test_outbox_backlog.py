"""The outbox backlog: what edgehub measures, the Node annotation cloudhub keeps, and what
the console's fleet page shows (while the node is linked and after it went offline)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from edgebus import names
from services.apiserver.console import live, model, pages
from services.apiserver.console.app import templates
from services.cloudhub import logic as hub
from services.edgehub import logic as edge

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def test_edgehub_counts_what_is_stored_and_not_yet_forwarded() -> None:
    # 1,000 messages of 200 bytes kept; 400 already in the cloud
    assert edge.outbox_backlog(1000, 400, 1000, 200_000, 95.04) == {"messages": 600, "bytes": 120_000, "oldestSeconds": 95.0}
    # a retained window (first messages expired): never more pending than stored
    assert edge.outbox_backlog(5000, 0, 300, 30_000, 10.0)["messages"] == 300
    assert edge.outbox_backlog(1000, 1000, 1000, 200_000, 5.0) == {"messages": 0, "bytes": 0, "oldestSeconds": 0.0}
    assert edge.outbox_backlog(0, 0, 0, 0, None) == {"messages": 0, "bytes": 0, "oldestSeconds": 0.0}


def test_edgehub_reports_on_change_only() -> None:
    a = edge.outbox_backlog(10, 5, 10, 100, 3.0)
    assert edge.backlog_changed(None, a)
    assert not edge.backlog_changed(a, edge.outbox_backlog(10, 5, 10, 100, 60.0))  # only older
    assert edge.backlog_changed(a, edge.outbox_backlog(10, 10, 10, 100, 0.0))


def test_cloudhub_annotation_and_bad_reports() -> None:
    ann = json.loads(hub.outbox_backlog({"messages": 600, "bytes": 120_000, "oldestSeconds": 95.0}, NOW))
    assert ann == {"messages": 600, "bytes": 120_000, "oldestSeconds": 95.0, "reportedAt": "2026-03-01T12:00:00Z"}
    for bad in ("x", {"messages": -1}, {"bytes": "1"}, {"messages": True}, {"oldestSeconds": 1e300}):
        with pytest.raises(ValueError):
            hub.outbox_backlog(bad, NOW)


def _node(ready: str, ann: str | None) -> dict:
    t = (NOW - dt.timedelta(seconds=300)).strftime("%Y-%m-%dT%H:%M:%SZ")
    md: dict = {"name": "n1", "labels": {}}
    if ann is not None:
        md["annotations"] = {names.ANN_OUTBOX_BACKLOG: ann}
    return {"metadata": md, "status": {"conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": t, "lastHeartbeatTime": t}]}}


def test_the_fleet_shows_the_backlog_and_keeps_it_while_offline() -> None:
    ann = hub.outbox_backlog({"messages": 1234, "bytes": 2_500_000, "oldestSeconds": 420.0}, NOW - dt.timedelta(seconds=90))
    row = model.node_row(_node("True", ann), [], [], NOW)
    assert row.backlog is not None and row.backlog.text == "1,234 msgs · 2.4 MiB · oldest 7m" and row.backlog.reported == "90s"
    env = templates()
    page = pages.fleet_page("", "all", "site")

    def html(node: dict) -> str:
        states = {"nodes": live.FeedState({"/n1": node}), "pods": live.FeedState(), "devices": live.FeedState()}
        return env.get_template(page.template).render(**page.context(states, NOW))

    up = html(_node("True", ann))
    assert "1,234 msgs · 2.4 MiB · oldest 7m" in up and 'data-messages="1234"' in up and "as of" not in up
    down = html(_node("Unknown", ann))  # offline: the last report stays, with its age
    assert "1,234 msgs" in down and "(as of 90s ago)" in down
    empty = html(_node("True", hub.outbox_backlog({"messages": 0, "bytes": 0, "oldestSeconds": 0}, NOW)))
    assert 'data-messages="0"' in empty
    assert model.node_row(_node("True", None), [], [], NOW).backlog is None
    assert model.node_row(_node("True", "not json"), [], [], NOW).backlog is None  # a bad annotation never breaks the page
