"""Scheduling, events and drain with the real kubectl (1.27 and 1.33) against a lab of two
nodes whose pods run in real containerd: a pod without a node is scheduled and runs,
``kubectl describe`` shows its events from the scheduler and the node, ``kubectl get
events -w`` streams them, an unschedulable pod shows FailedScheduling, and ``kubectl
drain`` cordons and evicts through ``pods/eviction`` honouring a PodDisruptionBudget."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import wait_until

from .kubectl import KUBECTL, BackgroundLab, Kubectl, Watch, versioned_kubectls

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")]

BUSYBOX = "docker.io/library/busybox:edgebus"
VERSIONS = [v for v in ("1.27", "1.33") if v in versioned_kubectls()]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundLab]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    bl = BackgroundLab(tmp_path_factory.mktemp("kubectl-workloads"), proxy=False, devices=False, nodes=2)
    try:
        yield bl
    finally:
        bl.close()


@pytest.fixture(scope="module", params=VERSIONS or ["default"])
def k(request: pytest.FixtureRequest, lab: BackgroundLab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    binary = versioned_kubectls().get(request.param)
    return Kubectl(tmp_path_factory.mktemp(f"kubectl-{request.param}"), "cloud", lab.rl.lab.plan.apiserver_url, binary, ca_file=lab.rl.lab.plan.ca_file, token=lab.rl.lab.plan.admin_token())


def suffix(k: Kubectl) -> str:
    return re.sub(r"[^0-9]", "", Path(k.binary).name) or "x"


def pod_yaml(name: str, *, command: str = "sleep 3600", labels: dict[str, str] | None = None, **spec: object) -> str:
    md: dict[str, object] = {"name": name, "namespace": "default", "labels": labels or {}}
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": md,
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", command]}], **spec},
    }
    return yaml.safe_dump(body)


def describe_events(k: Kubectl, kind: str, name: str) -> list[list[str]]:
    """The rows of the Events table of ``kubectl describe``."""
    out = k.out("describe", kind, name)
    assert "Events:" in out, out
    lines = out.split("Events:", 1)[1].splitlines()
    rows = [re.split(r"\s{2,}", ln.strip()) for ln in lines if ln.strip() and not ln.strip().startswith(("Type", "----", "<none>"))]
    return rows


def test_a_pod_without_a_node_is_scheduled_runs_and_describe_shows_its_events(k: Kubectl) -> None:
    name = f"placed-{suffix(k)}"
    t0 = time.monotonic()
    k.run("apply", "-f", "-", stdin=pod_yaml(name, nodeSelector={"kubernetes.io/hostname": "edge-2"}))
    wait_until(lambda: k.out("get", "pod", name, "-o", "jsonpath={.spec.nodeName}") == "edge-2", timeout=10, interval=0.02, msg="bound")
    bound_s = time.monotonic() - t0
    assert bound_s < 2.0, f"bound after {bound_s:.2f}s (kubectl's own round trips included)"
    wait_until(lambda: k.out("get", "pod", name, "-o", "jsonpath={.status.phase}") == "Running", timeout=60, msg="Running on edge-2")

    def events() -> list[list[str]] | None:
        rows = describe_events(k, "pod", name)
        return rows if {"Scheduled", "Pulled", "Created", "Started"} <= {r[1] for r in rows if len(r) > 1} else None

    rows = wait_until(events, timeout=30, msg="scheduler and node events in kubectl describe")
    by_reason = {r[1]: r for r in rows}
    assert by_reason["Scheduled"][0] == "Normal" and by_reason["Scheduled"][3] == "default-scheduler"
    assert by_reason["Scheduled"][4] == f"Successfully assigned default/{name} to edge-2"
    assert by_reason["Started"][3] == "edged" and by_reason["Started"][4] == "Started container main"
    assert by_reason["Pulled"][4] == f'Container image "{BUSYBOX}" already present on machine'
    k.run("delete", "pod", name, "--wait=false")


def test_an_unschedulable_pod_shows_failed_scheduling(k: Kubectl) -> None:
    name = f"nowhere-{suffix(k)}"
    k.run("apply", "-f", "-", stdin=pod_yaml(name, nodeSelector={"site": "mars"}))
    want = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."

    def failed() -> list[str] | None:
        return next((r for r in describe_events(k, "pod", name) if len(r) > 1 and r[1] == "FailedScheduling"), None)

    row = wait_until(failed, timeout=15, msg="FailedScheduling in describe")
    assert row[0] == "Warning" and row[3] == "default-scheduler" and row[4] == want
    out = k.out("get", "pod", name, "-o", "jsonpath={.status.conditions[?(@.type=='PodScheduled')].message}")
    assert out == want
    # a label makes the node fit: the pod is bound without further ado
    k.run("label", "node", "edge-1", "site=mars", "--overwrite")
    try:
        wait_until(lambda: k.out("get", "pod", name, "-o", "jsonpath={.spec.nodeName}") == "edge-1", timeout=10, msg="bound after the label")
    finally:
        k.run("label", "node", "edge-1", "site-")
        k.run("delete", "pod", name, "--wait=false")


def test_get_events_watch_streams_new_events(k: Kubectl) -> None:
    name = f"crashy-{suffix(k)}"
    w = Watch(k.argv("get", "events", "-w", "--request-timeout", "0", "--field-selector", f"involvedObject.name={name}"))
    try:
        k.run("apply", "-f", "-", stdin=pod_yaml(name, command="exit 3", nodeSelector={"kubernetes.io/hostname": "edge-1"}))
        assert "Successfully assigned" in w.until("Scheduled", timeout=20)
        assert "Started container main" in w.until("Started", timeout=60)
        line = w.until("BackOff", timeout=60)
        assert "Back-off restarting failed container main" in line and "Warning" in line
    finally:
        w.close()
        k.run("delete", "pod", name, "--wait=false")
    table = k.out("get", "events", "--field-selector", f"involvedObject.name={name},reason=Started", "-o", "custom-columns=COUNT:.count,SOURCE:.source.component")
    count, source = table.splitlines()[1].split()
    assert source == "edged" and int(count) >= 1


def test_drain_cordons_and_evicts_honouring_the_budget(k: Kubectl, lab: BackgroundLab) -> None:
    # names of this attempt only: a failed attempt's pods may still be terminating when
    # the test is run again, and the budget would count them
    s = f"{suffix(k)}-{secrets.token_hex(2)}"
    app = f"web-{s}"
    names = [f"{app}-{i}" for i in range(3)]
    for n in names:
        # bare pods (an owner that does not exist would have them garbage-collected), so
        # drain needs --force; this test acts as their controller
        k.run("apply", "-f", "-", stdin=pod_yaml(n, labels={"app": app}, nodeSelector={"kubernetes.io/hostname": "edge-1"}))
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": app, "namespace": "default"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": app}}}}
    k.run("apply", "-f", "-", stdin=yaml.safe_dump(pdb))
    for n in names:
        wait_until(lambda n=n: k.out("get", "pod", n, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True", timeout=60, msg=f"{n} Ready")
    wait_until(lambda: k.out("get", "pdb", app, "-o", "jsonpath={.status.disruptionsAllowed}") == "1", timeout=15, msg="budget allows one disruption")
    table = k.out("get", "pdb", app)
    assert re.search(rf"{app}\s+2\s+N/A\s+1\s", table), table
    drain = Watch(k.argv("drain", "edge-1", "--ignore-daemonsets", "--force", "--timeout=150s", "--pod-selector", f"app={app}"), merge_stderr=True)
    refused = False
    replaced: set[str] = set()
    try:
        drain.until("cordoned", timeout=20)
        assert k.out("get", "node", "edge-1", "-o", "jsonpath={.spec.unschedulable}") == "true"
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = drain.next(timeout=0.5)
            if line is not None:
                if "Cannot evict pod as it would violate the pod's disruption budget." in line:
                    assert "will retry after 5s" in line, line
                    refused = True
                if line.strip() == "node/edge-1 drained":
                    break
                assert "error: unable to drain" not in line and "pending nodes to be drained" not in line, line
            # act as the pods' controller: every evicted pod gets a replacement (it goes to
            # edge-2: edge-1 is cordoned)
            for n in names:
                if n in replaced:
                    continue
                st = k.run("get", "pod", n, "-o", "jsonpath={.metadata.deletionTimestamp}", check=False)
                if st.returncode != 0 or st.stdout.strip():
                    replaced.add(n)
                    k.run("apply", "-f", "-", stdin=pod_yaml(f"{n}-new", labels={"app": app}))
        else:
            raise AssertionError("kubectl drain did not finish")
    finally:
        drain.close()
        k.run("uncordon", "edge-1")
        k.run("delete", "pdb", app)
    try:
        assert refused, "an eviction the budget did not allow was refused (429) and retried"
        assert replaced == set(names)
        for n in names:
            assert k.run("get", "pod", n, check=False).returncode != 0, f"{n} evicted and gone"
        for n in names:
            assert k.out("get", "pod", f"{n}-new", "-o", "jsonpath={.spec.nodeName}") == "edge-2"
    finally:
        k.run("delete", "pod", "-l", f"app={app}", "--wait=false")


def test_drain_skips_daemonset_pods(k: Kubectl) -> None:
    if "daemonsets" not in k.out("api-resources", "--api-group=apps", "-o", "name"):
        pytest.skip("apps/v1 DaemonSets are not served on this branch: kubectl drain looks the owner up")
    s = suffix(k)
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": f"agent-{s}", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": f"agent-{s}"}},
            "template": {"metadata": {"labels": {"app": f"agent-{s}"}}, "spec": {"nodeSelector": {"kubernetes.io/hostname": "edge-1"}, "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}]}},
        },
    }
    k.run("apply", "-f", "-", stdin=yaml.safe_dump(ds))
    try:
        uid = k.out("get", "ds", f"agent-{s}", "-o", "jsonpath={.metadata.uid}")
        try:
            wait_until(lambda: k.out("get", "pods", "-l", f"app=agent-{s}", "-o", "name"), timeout=10, msg="a DaemonSet pod")
        except AssertionError:  # no DaemonSet controller: make its pod by hand
            body = yaml.safe_load(pod_yaml(f"agent-{s}-x", labels={"app": f"agent-{s}"}, nodeSelector={"kubernetes.io/hostname": "edge-1"}))
            body["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": f"agent-{s}", "uid": uid, "controller": True}]
            k.run("apply", "-f", "-", stdin=yaml.safe_dump(body))
        out = k.run("drain", "edge-1", "--ignore-daemonsets", "--timeout=60s", "--pod-selector", f"app=agent-{s}").stderr
        assert "ignoring daemonset-managed pods" in out.lower(), out
        assert k.out("get", "pods", "-l", f"app=agent-{s}", "-o", "name"), "the DaemonSet pod stays"
    finally:
        k.run("uncordon", "edge-1")
        k.run("delete", "ds", f"agent-{s}", check=False)
        k.run("delete", "pod", "-l", f"app=agent-{s}", "--wait=false")


def test_taint_blocks_and_kubectl_events_lists_why(k: Kubectl) -> None:
    name = f"tainted-{suffix(k)}"
    k.run("taint", "node", "edge-2", "dedicated=infra:NoSchedule", "--overwrite")
    try:
        k.run("apply", "-f", "-", stdin=pod_yaml(name, nodeSelector={"kubernetes.io/hostname": "edge-2"}))
        want = "1 node(s) had untolerated taint {dedicated: infra}"

        def listed() -> str | None:
            out = k.out("events", "--for", f"pod/{name}")
            return out if want in out else None

        out = wait_until(listed, timeout=15, msg="kubectl events shows the FailedScheduling")
        assert "FailedScheduling" in out and "Warning" in out
    finally:
        k.run("taint", "node", "edge-2", "dedicated-")
    wait_until(lambda: k.out("get", "pod", name, "-o", "jsonpath={.spec.nodeName}") == "edge-2", timeout=10, msg="bound once untainted")
    k.run("delete", "pod", name, "--wait=false")
