"""edgebus.objects.refs (what a pod needs on its node) and edgebus.objects.tables (kubectl columns)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from edgebus.objects import tables
from edgebus.objects.refs import pod_node, pod_references

CM, SEC = "configmaps", "secrets"

# ---------------------------------------------------------------------------------------
# refs
# ---------------------------------------------------------------------------------------


def test_pod_references_everywhere() -> None:
    pod = {
        "spec": {
            "volumes": [
                {"name": "a", "configMap": {"name": "vol-cm"}},
                {"name": "b", "secret": {"secretName": "vol-sec"}},
                {"name": "c", "emptyDir": {}},
                {
                    "name": "d",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "proj-cm"}},
                            {"secret": {"name": "proj-sec"}},
                            {"downwardAPI": {"items": []}},
                        ]
                    },
                },
            ],
            "initContainers": [
                {"name": "i", "envFrom": [{"secretRef": {"name": "init-envfrom-sec"}}]},
            ],
            "containers": [
                {
                    "name": "c1",
                    "env": [
                        {"name": "A", "value": "plain"},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                        {"name": "C", "valueFrom": {"secretKeyRef": {"name": "env-sec", "key": "k"}}},
                        {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ],
                    "envFrom": [{"configMapRef": {"name": "envfrom-cm"}}, {"secretRef": {"name": "envfrom-sec"}}],
                },
            ],
            "imagePullSecrets": [{"name": "regcred"}],
        }
    }
    assert pod_references(pod) == {
        (CM, "vol-cm"),
        (SEC, "vol-sec"),
        (CM, "proj-cm"),
        (SEC, "proj-sec"),
        (SEC, "init-envfrom-sec"),
        (CM, "env-cm"),
        (SEC, "env-sec"),
        (CM, "envfrom-cm"),
        (SEC, "envfrom-sec"),
        (SEC, "regcred"),
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"volumes": [{"configMap": {"name": "x"}}]}, {(CM, "x")}),
        ({"volumes": [{"secret": {"secretName": "x"}}]}, {(SEC, "x")}),
        # A secret volume names its secret by secretName, not name.
        ({"volumes": [{"secret": {"name": "x"}}]}, set()),
        ({"volumes": [{"projected": {"sources": [{"configMap": {"name": "x"}}]}}]}, {(CM, "x")}),
        ({"initContainers": [{"env": [{"valueFrom": {"configMapKeyRef": {"name": "x"}}}]}]}, {(CM, "x")}),
        ({"initContainers": [{"envFrom": [{"configMapRef": {"name": "x"}}]}]}, {(CM, "x")}),
        ({"ephemeralContainers": [{"envFrom": [{"secretRef": {"name": "x"}}]}]}, {(SEC, "x")}),
        ({"imagePullSecrets": [{"name": "x"}, {"name": ""}, "junk"]}, {(SEC, "x")}),
        # The same object referenced twice is one reference.
        (
            {"volumes": [{"configMap": {"name": "x"}}], "containers": [{"envFrom": [{"configMapRef": {"name": "x"}}]}]},
            {(CM, "x")},
        ),
    ],
)
def test_pod_references_each_source(spec: dict[str, Any], expected: set[tuple[str, str]]) -> None:
    assert pod_references({"spec": spec}) == expected


@pytest.mark.parametrize(
    "pod",
    [
        {},
        {"spec": None},
        {"spec": "junk"},
        {"spec": {"volumes": ["junk", None], "containers": ["junk", {"env": [None, "x", {"valueFrom": None}]}]}},
        {"spec": {"volumes": [{"configMap": {"name": 5}}, {"secret": {"secretName": ""}}]}},
        {"spec": {"containers": [{"envFrom": ["x", {"configMapRef": None}]}]}},
    ],
)
def test_pod_references_tolerates_junk(pod: dict[str, Any]) -> None:
    assert pod_references(pod) == set()


@pytest.mark.parametrize(
    ("pod", "node"),
    [
        ({"spec": {"nodeName": "edge-1"}}, "edge-1"),
        ({"spec": {"nodeName": ""}}, None),
        ({"spec": {}}, None),
        ({}, None),
        ({"spec": None}, None),
        ({"spec": "x"}, None),
        ({"spec": {"nodeName": 5}}, None),
    ],
)
def test_pod_node(pod: dict[str, Any], node: str | None) -> None:
    assert pod_node(pod) == node


# ---------------------------------------------------------------------------------------
# age
# ---------------------------------------------------------------------------------------

NOW = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def ts(**delta: float) -> str:
    return (NOW - dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        ({"seconds": 0}, "0s"),
        ({"seconds": 59}, "59s"),
        ({"seconds": 119}, "119s"),
        ({"seconds": 120}, "2m"),
        ({"seconds": 125}, "2m5s"),
        ({"minutes": 9, "seconds": 59}, "9m59s"),
        ({"minutes": 10}, "10m"),
        ({"minutes": 10, "seconds": 30}, "10m"),
        ({"minutes": 179}, "179m"),
        ({"hours": 3}, "3h"),
        ({"hours": 3, "minutes": 5}, "3h5m"),
        ({"hours": 7, "minutes": 59}, "7h59m"),
        ({"hours": 8}, "8h"),
        ({"hours": 47, "minutes": 59}, "47h"),
        ({"hours": 48}, "2d"),
        ({"days": 2, "hours": 5}, "2d5h"),
        ({"days": 7, "hours": 23}, "7d23h"),
        ({"days": 8}, "8d"),
        ({"days": 729}, "729d"),
        ({"days": 800}, "2y70d"),
        ({"seconds": -30}, "0s"),  # clock skew: never negative
    ],
)
def test_age(delta: dict[str, float], expected: str) -> None:
    assert tables.age(ts(**delta), now=NOW) == expected


@pytest.mark.parametrize(("days", "expected"), [(730, "2y"), (365 * 9, "9y"), (365 * 9 + 100, "9y")])
def test_age_years_like_kubectl(days: int, expected: str) -> None:
    assert tables.age(ts(days=days), now=NOW) == expected


def test_age_of_bad_timestamps() -> None:
    assert tables.age(None, now=NOW) == "<unknown>"
    assert tables.age("", now=NOW) == "<unknown>"
    assert tables.age("yesterday", now=NOW) == "<unknown>"
    assert tables.age("2024-06-01T11:59:00+00:00", now=NOW) == "60s"
    assert tables.age("2024-06-01T11:59:00.5Z", now=NOW) == "59s"


def real_ts(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------
# nodes
# ---------------------------------------------------------------------------------------


def node(ready: str | None = "True", labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready})
    n: dict[str, Any] = {
        "metadata": {"name": "edge-1", "labels": labels or {}, "creationTimestamp": real_ts(hours=1)},
        "status": {
            "conditions": conditions,
            "nodeInfo": {"kubeletVersion": "v1.29.0-edgebus", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "containerd://1.6"},
            "addresses": [{"type": "Hostname", "address": "edge-1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
        },
    }
    n.update(extra)
    return n


@pytest.mark.parametrize(
    ("n", "status"),
    [
        (node("True"), "Ready"),
        (node("False"), "NotReady"),
        (node("Unknown"), "NotReady"),
        (node(None), "NotReady"),
        ({"metadata": {"name": "x"}}, "NotReady"),
        (node("True", spec={"unschedulable": True}), "Ready,SchedulingDisabled"),
        (node("False", spec={"unschedulable": True}), "NotReady,SchedulingDisabled"),
    ],
)
def test_node_status(n: dict[str, Any], status: str) -> None:
    assert tables.node_status(n) == status


def test_node_ready() -> None:
    assert tables.node_ready(node("True")) == "True"
    assert tables.node_ready(node("False")) == "False"
    assert tables.node_ready(node(None)) == "Unknown"


@pytest.mark.parametrize(
    ("labels", "roles"),
    [
        ({}, "<none>"),
        ({"app": "x"}, "<none>"),
        ({"node-role.kubernetes.io/edge": ""}, "edge"),
        ({"node-role.kubernetes.io/edge": "", "node-role.kubernetes.io/agent": "true"}, "agent,edge"),
        ({"node-role.kubernetes.io/": ""}, "<none>"),
        ({"kubernetes.io/hostname": "edge-1"}, "<none>"),
    ],
)
def test_node_roles(labels: dict[str, str], roles: str) -> None:
    assert tables.node_roles(node(labels=labels)) == roles


def test_node_rows_and_wide() -> None:
    n = node(labels={"node-role.kubernetes.io/edge": ""})
    headers, rows = tables.rows("nodes", [n])
    assert headers == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert rows == [["edge-1", "Ready", "edge", rows[0][3], "v1.29.0-edgebus"]]
    assert rows[0][3] == "60m"  # rows() ages against the real clock

    headers, rows = tables.rows("nodes", [n], wide=True)
    assert headers == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert rows[0][5:] == ["10.0.0.5", "<none>", "Debian", "6.1", "containerd://1.6"]

    _, rows = tables.rows("nodes", [{"metadata": {"name": "bare"}}], wide=True)
    assert rows == [["bare", "NotReady", "<none>", "<unknown>", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]]


# ---------------------------------------------------------------------------------------
# pods
# ---------------------------------------------------------------------------------------


def pod(
    containers: int = 2,
    statuses: list[dict[str, Any]] | None = None,
    phase: str | None = "Running",
    **extra: dict[str, Any],
) -> dict[str, Any]:
    p: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "prod", "creationTimestamp": ts(seconds=30)},
        "spec": {"nodeName": "edge-1", "containers": [{"name": f"c{i}", "image": "i"} for i in range(containers)]},
        "status": {"containerStatuses": statuses or [], "podIP": "10.1.0.7"},
    }
    if phase:
        p["status"]["phase"] = phase
    for k, v in extra.items():  # merged into the top-level section of the same name
        p[k].update(v)
    return p


def cs(ready: bool = True, restarts: int = 0, state: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ready": ready, "restartCount": restarts, "state": state or {"running": {}}}


def test_pod_ready_and_restarts() -> None:
    p = pod(statuses=[cs(True, 1), cs(False, 3)])
    assert tables.pod_ready(p) == "1/2"
    assert tables.pod_restarts(p) == "4"
    assert tables.pod_ready(pod(statuses=[cs(), cs()])) == "2/2"
    assert tables.pod_ready(pod(statuses=None, phase=None)) == "0/2"
    assert tables.pod_restarts(pod(statuses=None)) == "0"


@pytest.mark.parametrize(
    ("p", "status"),
    [
        (pod(statuses=[cs(), cs()]), "Running"),
        (pod(phase=None), "Pending"),
        ({"metadata": {"name": "x"}}, "Pending"),
        (pod(statuses=[cs(), cs(False, 5, {"waiting": {"reason": "CrashLoopBackOff"}})]), "CrashLoopBackOff"),
        (pod(phase="Pending", statuses=[cs(False, 0, {"waiting": {"reason": "ContainerCreating"}})]), "ContainerCreating"),
        (pod(phase="Pending", statuses=[cs(False, 0, {"waiting": {}})]), "Pending"),
        (pod(phase="Failed", statuses=[cs(False, 0, {"terminated": {"reason": "Error", "exitCode": 1}})]), "Error"),
        (pod(phase="Failed", status={"reason": "Evicted"}), "Evicted"),
        (pod(statuses=[cs()], metadata={"deletionTimestamp": ts(seconds=1)}), "Terminating"),
    ],
)
def test_pod_status(p: dict[str, Any], status: str) -> None:
    assert tables.pod_status(p) == status


def test_pod_rows_wide_and_namespaced() -> None:
    p = pod(statuses=[cs(True, 1), cs(True, 0)])
    bare = {"metadata": {"name": "pending"}, "spec": {"containers": [{"name": "c"}]}}
    headers, rows = tables.rows("pods", [p, bare])
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r[:4] for r in rows] == [["web", "2/2", "Running", "1"], ["pending", "0/1", "Pending", "0"]]
    assert rows[1][4] == "<unknown>"
    assert all(len(r) == len(headers) for r in rows)

    headers, rows = tables.rows("pods", [p, bare], wide=True)
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert [r[5:] for r in rows] == [["10.1.0.7", "edge-1", "<none>", "<none>"], ["<none>", "<none>", "<none>", "<none>"]]

    headers, rows = tables.rows("pods", [p, bare], with_namespace=True)
    assert headers == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r[:2] for r in rows] == [["prod", "web"], ["", "pending"]]

    headers, _ = tables.rows("pods", [p], wide=True, with_namespace=True)
    assert headers[0] == "NAMESPACE" and headers[-4:] == ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]


def test_columns_never_show_wide_ones_by_default() -> None:
    for resource in tables.COLUMNS:
        narrow = tables.columns(resource)
        wide = tables.columns(resource, wide=True)
        assert not any(c.wide for c in narrow)
        assert [c.name for c in narrow] == [c.name for c in wide if not c.wide]
        # as kube-apiserver prints them: events lead with LAST SEEN and name themselves in a wide column
        assert narrow[0].name == ("LAST SEEN" if resource == "events" else "NAME")
        assert any(c.name == "NAME" for c in wide)


def test_other_resources() -> None:
    cm = {"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert tables.rows("configmaps", [cm]) == (["NAME", "DATA", "AGE"], [["cfg", "3", "<unknown>"]])
    sec = {"metadata": {"name": "s"}, "data": {"a": "YQ=="}}
    assert tables.rows("secrets", [sec]) == (["NAME", "TYPE", "DATA", "AGE"], [["s", "Opaque", "1", "<unknown>"]])
    ns = {"metadata": {"name": "team"}, "status": {"phase": "Terminating"}}
    assert tables.rows("namespaces", [ns, {"metadata": {"name": "x"}}])[1] == [
        ["team", "Terminating", "<unknown>"],
        ["x", "Active", "<unknown>"],
    ]
    assert tables.rows("widgets", [{"metadata": {"name": "w"}}]) == (["NAME", "AGE"], [["w", "<unknown>"]])
    assert tables.rows("pods", []) == (["NAME", "READY", "STATUS", "RESTARTS", "AGE"], [])
