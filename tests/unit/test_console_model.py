"""The console's view models, feeds and rendering, without a server."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from starlette.requests import Request

from services.apiserver.console import live, model, pages
from services.apiserver.console.app import _safe_next, templates, with_console
from services.apiserver.console.session import csrf_token, same_origin

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def node(name: str, ready: str = "True", since: float = 600, heartbeat: float = 5, labels: dict[str, str] | None = None, **conds: str) -> dict[str, Any]:
    c = [{"type": "Ready", "status": ready, "reason": "EdgeReady" if ready == "True" else "NodeStatusUnknown", "lastTransitionTime": ts(since), "lastHeartbeatTime": ts(heartbeat)}]
    c += [{"type": k, "status": v} for k, v in conds.items()]
    return {"metadata": {"name": name, "labels": labels or {}}, "status": {"conditions": c, "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}}


def pod(name: str, node_name: str, phase: str = "Running", restarts: tuple[int, ...] = (0,), ready: tuple[bool, ...] = (True,)) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": ts(90)},
        "spec": {"nodeName": node_name, "containers": [{"name": f"c{i}"} for i in range(len(restarts))]},
        "status": {"phase": phase, "containerStatuses": [{"restartCount": r, "ready": ok} for r, ok in zip(restarts, ready, strict=True)]},
    }


def device(name: str, node_name: str, state: str = "online", desired: dict[str, str] | None = None, reported: dict[str, tuple[str, int]] | None = None) -> dict[str, Any]:
    return {
        "kind": "Device",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node_name, "deviceModelRef": {"name": "m"}, "properties": [{"name": k, "desired": {"value": v}} for k, v in (desired or {}).items()]},
        "status": {"state": state, "twins": [{"propertyName": k, "reported": {"value": v, "metadata": {"timestamp": str(t)}}} for k, (v, t) in (reported or {}).items()]},
    }


MODEL = {
    "spec": {
        "properties": [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly", "unit": "Celsius"},
            {"name": "setpoint", "type": "FLOAT", "accessMode": "ReadWrite", "minimum": "5", "maximum": "35"},
            {"name": "fan", "type": "BOOLEAN", "accessMode": "ReadWrite"},
        ]
    }
}


def test_age_is_kubectls_short_form() -> None:
    assert [model.age(NOW - dt.timedelta(seconds=s), NOW) for s in (5, 119, 120, 7199, 7200, 172800)] == ["5s", "119s", "2m", "119m", "2h", "2d"]
    assert model.age(None, NOW) == "" and model.age(NOW + dt.timedelta(seconds=3), NOW) == "0s"


def test_fleet_rows_count_pods_and_devices_and_put_not_ready_first() -> None:
    nodes = [node("b", labels={"edgebus.io/site": "north"}), node("a", "Unknown", since=30, labels={"edgebus.io/site": "north"}), node("c", DiskPressure="True")]
    pods = [pod("p1", "b"), pod("p2", "b", phase="Pending", restarts=(3, 2), ready=(False, True)), pod("p3", "a")]
    devices = [device("d1", "b"), device("d2", "b", state="offline")]
    f = model.fleet(nodes, pods, devices, NOW)
    assert (f.total, f.shown, f.ready, f.not_ready) == (3, 3, 2, 1)
    assert [(g, [r.name for r in rows]) for g, rows in f.groups] == [("north", ["a", "b"]), (model.UNGROUPED, ["c"])]
    a, b = f.groups[0][1]
    assert (a.ready, a.link, a.since, a.reason) == ("Unknown", "down", "30s", "NodeStatusUnknown")
    assert (b.pods, b.pods_running, b.devices, b.devices_online, b.heartbeat, b.since, b.address) == (2, 1, 2, 1, "5s", "10m", "10.0.0.1")
    assert f.groups[1][1][0].problems == ["DiskPressure"]


def test_fleet_filter_and_grouping() -> None:
    nodes = [node("edge-1", labels={"site": "plant-a", "apps.kubeedge.io/belonging-to": "line-1"}), node("edge-2", "False", labels={"site": "plant-b"}), node("gw-3", DiskPressure="True")]
    names = lambda f: sorted(r.name for _, rows in f.groups for r in rows)  # noqa: E731
    assert names(model.fleet(nodes, [], [], NOW, query="edge")) == ["edge-1", "edge-2"]
    assert names(model.fleet(nodes, [], [], NOW, query="EDGE plant-b")) == ["edge-2"], "every word must match, case-insensitively"
    assert names(model.fleet(nodes, [], [], NOW, query="site=plant-a")) == ["edge-1"]
    assert names(model.fleet(nodes, [], [], NOW, query="diskpressure")) == ["gw-3"]
    assert names(model.fleet(nodes, [], [], NOW, status="notready")) == ["edge-2"]
    assert names(model.fleet(nodes, [], [], NOW, status="ready")) == ["edge-1", "gw-3"]
    f = model.fleet(nodes, [], [], NOW, grouping="nodegroup")
    assert [g for g, _ in f.groups] == ["line-1", model.UNGROUPED]
    f = model.fleet(nodes, [], [], NOW, query="nothing-like-this")
    assert f.groups == [] and f.shown == 0 and f.total == 3


def test_pod_rows() -> None:
    r = model.pod_row(pod("p", "n", restarts=(3, 2), ready=(False, True)), NOW)
    assert (r.ready, r.restarts, r.age, r.phase, r.terminating) == ("1/2", 5, "90s", "Running", False)
    bare = model.pod_row({"metadata": {"name": "x", "namespace": "d", "deletionTimestamp": ts(1)}, "spec": {}}, NOW)
    assert (bare.phase, bare.ready, bare.restarts, bare.terminating) == ("Pending", "0/0", 0, True)


def test_event_rows_newest_first_bounded_and_filtered() -> None:
    evs = [
        {"lastTimestamp": ts(50), "reason": "Old", "involvedObject": {"kind": "Pod", "name": "p"}, "message": "m1", "count": 3},
        {"eventTime": ts(5), "reason": "New", "type": "Warning", "involvedObject": {"kind": "Device", "name": "d"}, "note": "m2"},
        {"metadata": {"creationTimestamp": ts(20)}, "reason": "Mid", "involvedObject": {"kind": "Node", "name": "other"}},
    ]
    rows = model.event_rows(evs, NOW)
    assert [(r.reason, r.age) for r in rows] == [("New", "5s"), ("Mid", "20s"), ("Old", "50s")]
    assert (rows[0].type, rows[0].object, rows[0].message, rows[2].count) == ("Warning", "device/d", "m2", 3)
    assert [r.reason for r in model.event_rows(evs, NOW, limit=1)] == ["New"]
    assert [r.reason for r in model.event_rows(evs, NOW, involving={("Pod", "p"), ("Node", "n")})] == ["Old"]


def test_device_view_desired_vs_reported() -> None:
    ms = int(NOW.timestamp() * 1000) - 3000
    dev = device("t", "n", desired={"setpoint": "25.5", "fan": "true"}, reported={"temperature": ("21.5", ms), "setpoint": ("25.50", ms), "fan": ("false", ms), "extra": ("x", ms)})
    v = model.device_view(dev, MODEL, now=NOW)
    rows = {p.name: p for p in v.props}
    assert [p.name for p in v.props] == ["temperature", "setpoint", "fan", "extra"], "model order, then what only the device has"
    assert rows["setpoint"].in_sync, "25.5 and 25.50 are one value"
    assert not rows["fan"].in_sync and rows["fan"].desired == "true" and rows["fan"].reported == "false"
    assert rows["temperature"].in_sync and not rows["temperature"].writable and rows["temperature"].unit == "Celsius"
    assert rows["temperature"].reported_at == "3s"
    assert rows["extra"].type == "STRING" and rows["extra"].writable
    assert (v.state, v.node, v.model) == ("online", "n", "m")
    assert not model.device_view(device("t", "n", desired={"setpoint": "22"}), MODEL).props[1].in_sync, "desired but nothing reported yet"


def test_with_desired_sets_or_adds_and_leaves_the_input_alone() -> None:
    dev = device("t", "n", desired={"setpoint": "22"})
    out = model.with_desired(dev, "setpoint", "25")
    assert model.desired_values(out) == {"setpoint": "25"} and model.desired_values(dev) == {"setpoint": "22"}
    assert model.desired_values(model.with_desired(out, "fan", "true")) == {"setpoint": "25", "fan": "true"}


def test_history_is_bounded_and_skips_reports_seen_again() -> None:
    h = model.PropertyHistory(per_property=3, max_devices=2)
    for i in range(5):
        h.record(device("a", "n", reported={"t": (str(20 + i), 1000 + i), "fan": ("true" if i % 2 else "false", 1000 + i), "name": ("text", 1000 + i)}))
    h.record(device("a", "n", reported={"t": ("24", 1004)}))  # the same report again (a re-list)
    assert h.values("default", "a", "t") == [22.0, 23.0, 24.0]
    assert h.values("default", "a", "fan") == [0.0, 1.0, 0.0] and h.values("default", "a", "name") == []
    h.record(device("b", "n", reported={"t": ("1", 1)}))
    h.record(device("a", "n", reported={"t": ("30", 2000)}))  # a is now the most recent
    h.record(device("c", "n", reported={"t": ("1", 1)}))
    assert h.values("default", "b", "t") == [], "the least recently updated device is forgotten"
    assert h.values("default", "a", "t") == [23.0, 24.0, 30.0]


def test_sparkline() -> None:
    assert model.sparkline([]) == "" and model.sparkline([1.0]) == ""
    svg = model.sparkline([1.0, 3.0, 2.0], width=100, height=20)
    assert svg.startswith("<svg") and 'points="0.0,18.0 50.0,2.0 100.0,10.0"' in svg and "1 to 3" in svg
    assert 'points="0.0,18.0 100.0,18.0"' in model.sparkline([5.0, 5.0], width=100, height=20), "a flat line stays in the box"


def test_workload_rows() -> None:
    dep = {"metadata": {"name": "web", "namespace": "default", "generation": 2}, "spec": {"replicas": 4}, "status": {"observedGeneration": 2, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3}}
    r = model.workload_row(dep, "Deployment")
    assert (r.desired, r.updated, r.ready, r.progress, r.state) == (4, 2, 3, 50, "Progressing")
    done = {**dep, "status": {"observedGeneration": 2, "updatedReplicas": 4, "readyReplicas": 4, "availableReplicas": 4}}
    assert model.workload_row(done, "Deployment").state == "Complete"
    assert model.workload_row({**done, "metadata": {**dep["metadata"], "generation": 3}}, "Deployment").state == "Progressing", "not observed yet"
    assert model.workload_row({**dep, "spec": {"replicas": 4, "paused": True}}, "Deployment").state == "Paused"
    assert model.workload_row({"metadata": {"name": "z"}, "spec": {"replicas": 0}, "status": {}}, "Deployment").progress == 100
    ds = {"metadata": {"name": "agent", "namespace": "kube-system"}, "status": {"desiredNumberScheduled": 10, "updatedNumberScheduled": 10, "numberReady": 7, "numberAvailable": 7}}
    r = model.workload_row(ds, "DaemonSet")
    assert (r.desired, r.ready, r.progress, r.state) == (10, 7, 70, "Progressing")


def test_feed_state_follows_watch_events() -> None:
    st = live.FeedState()
    obj = {"metadata": {"name": "a", "namespace": "x", "resourceVersion": "5"}}
    assert live.apply_event(st, "ADDED", obj) and st.revision == "5" and list(st.objects) == ["x/a"]
    assert live.apply_event(st, "MODIFIED", {**obj, "metadata": {**obj["metadata"], "resourceVersion": "7"}}) and st.revision == "7"
    assert not live.apply_event(st, "BOOKMARK", {"metadata": {"resourceVersion": "9"}}) and st.revision == "9"
    assert live.apply_event(st, "DELETED", obj) and st.objects == {}
    assert not live.apply_event(st, "DELETED", obj), "deleting what is not there changes nothing"


def test_sse_messages_carry_multiline_html() -> None:
    assert live.sse_message("fleet", "<p>a</p>\n<p>b</p>") == b"event: fleet\ndata: <p>a</p>\ndata: <p>b</p>\n\n"
    assert live.sse_message("x", "") == b"event: x\ndata: \n\n"


def test_csrf_and_origin_and_next() -> None:
    assert csrf_token("t1") != csrf_token("t2") and csrf_token("t1") == csrf_token("t1") and "t1" not in csrf_token("t1")

    def req(**headers: str) -> Request:
        return Request({"type": "http", "method": "POST", "path": "/", "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})

    assert same_origin(req(host="a:1")) and same_origin(req(host="a:1", origin="https://a:1"))
    assert not same_origin(req(host="a:1", origin="https://evil:1")) and not same_origin(req(host="a:1", origin="null"))
    assert _safe_next("/console/nodes/x") == "/console/nodes/x"
    for bad in ("https://evil/", "//evil/console/", "/api/v1/nodes", "/console/\\evil", None, ""):
        assert _safe_next(bad) == "/console/"


def test_fragments_escape_what_objects_carry() -> None:
    env = templates()
    evil = node("n1", labels={"edgebus.io/site": "<script>alert(1)</script>"})
    page = pages.fleet_page("", "all", "site")
    states = {"nodes": live.FeedState({"/n1": evil}), "pods": live.FeedState(), "devices": live.FeedState()}
    html = env.get_template(page.template).render(**page.context(states, NOW))
    assert "<script>" not in html and "&lt;script&gt;" in html and 'id="node-n1"' in html
    states["pods"].problem = live.ApiProblem(403, 'pods is forbidden: User "x" cannot list resource "pods"')
    html = env.get_template(page.template).render(**page.context(states, NOW))
    assert 'data-feed="pods"' in html and "403 Forbidden" in html
    states = {"deployments": live.FeedState(problem=live.ApiProblem(404, "not found")), "daemonsets": live.FeedState(problem=live.ApiProblem(404, "x"))}
    wp = pages.workloads_page()
    assert "not served by this apiserver yet" in env.get_template(wp.template).render(**wp.context(states, NOW))


def test_console_paths_go_to_the_console_and_the_rest_to_the_api() -> None:
    seen: list[str] = []

    def app(name: str) -> Any:
        async def call(scope: Any, receive: Any, send: Any) -> None:
            seen.append(f"{name}:{scope['path']}")

        return call

    both = with_console(app("api"), app("console"))
    for path in ("/console", "/console/", "/console/nodes/x", "/consoles", "/api/v1/nodes", "/"):
        asyncio.run(both({"type": "http", "path": path}, None, None))
    assert seen == ["console:/console", "console:/console/", "console:/console/nodes/x", "api:/consoles", "api:/api/v1/nodes", "api:/"]


def test_link_history_keeps_each_ready_transition_once() -> None:
    h = model.LinkHistory(per_node=2, max_nodes=2)
    h.record(node("a", since=300))
    h.record(node("a", since=300, heartbeat=1))  # a heartbeat: no transition
    h.record(node("a", "Unknown", since=60))
    h.record(node("a", since=10))
    assert [(c.ready, c.time) for c in h.changes("a")] == [("True", ts(10)), ("Unknown", ts(60))], "newest first, bounded"
    assert h.changes("a")[1].reason == "NodeStatusUnknown"
    h.record(node("b"))
    h.record(node("c"))
    assert h.changes("a") == [] and len(h.changes("c")) == 1, "the least recently changed node is forgotten"
    h.record({"metadata": {"name": "d"}, "status": {}})
    assert h.changes("d") == []


def test_the_lab_names_its_console() -> None:
    from edgebus.lab import LabPlan

    assert LabPlan(data_dir="/tmp/x", nodes=["edge-1"]).console_url == "https://127.0.0.1:14202/console/"
    assert LabPlan(data_dir="/tmp/x", nodes=["edge-1"], secure=False, base_port=15000).console_url == "http://127.0.0.1:15002/console/"


def test_the_devices_page_compares_values_by_their_models_types() -> None:
    page = pages.devices_page()
    dev = device("t", "n", desired={"setpoint": "25.5"}, reported={"setpoint": ("25.50", 1)})
    mod = {**MODEL, "metadata": {"name": "m", "namespace": "default"}}
    st = {"devices": live.FeedState({"default/t": dev}), "models": live.FeedState({"default/m": mod})}
    [v] = page.context(st, NOW)["devices"]
    assert v.props[1].name == "setpoint" and v.props[1].in_sync, "25.5 and 25.50 are one FLOAT"
    st["models"] = live.FeedState()
    [v] = page.context(st, NOW)["devices"]
    assert not v.props[0].in_sync, "without the model the strings differ"
