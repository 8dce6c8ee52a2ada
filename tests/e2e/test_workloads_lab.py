"""Workloads on a lab of real processes with real containerd pods, driven with the real
kubectl: KubeEdge's own e2e scenarios (a Deployment on edge nodes, scaled up and down, a
deleted pod re-created; a StatefulSet with repeated pod deletion), a DaemonSet on each of
two nodes and on a third that joins later, a Job to completion, rollouts and cascading
deletes.

Until the scheduler lands, the Deployment and StatefulSet templates bind their pods with
``nodeName`` (:data:`PLACEMENT`); with a scheduler, set it to ``{}`` (or a
``nodeSelector``) and the same scenarios hold.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from edgebus.cri import CriClient, api
from edgebus.lab import Lab, LabPlan
from edgebus.objectstore import ObjectStore
from edgebus.testing.containerd import skip_reason
from edgebus.testing.labrun import free_base_port
from edgebus.testing.waiting import wait_until

from .kubectl import KUBECTL, Kubectl, versioned_kubectls

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")]

T = TypeVar("T")
BUSYBOX = "docker.io/library/busybox:edgebus"
NODES = ["edge-1", "edge-2", "edge-3"]
#: how the Deployment's and StatefulSet's pods reach a node until a scheduler binds them
PLACEMENT: dict[str, Any] = {"nodeName": "edge-1"}
STS_PLACEMENT: dict[str, Any] = {"nodeName": "edge-2"}


class WorkloadLab:
    """A lab of three nodes of which edge-3 is started only when a test asks (a node that
    joins later), run in an event loop of its own thread so synchronous kubectl tests share it."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lab-loop", daemon=True)
        self.thread.start()
        base = free_base_port(len(NODES), devices=False)
        self.plan = LabPlan(data_dir=str(tmp / "lab"), nodes=NODES, base_port=base, grace=10, heartbeat=1.0, devices=False)
        self.lab = Lab(self.plan, die_with_supervisor=True)
        self.call(self.lab.up(nodes=NODES[:2]), timeout=180)
        self.bus = self.plan.cloud_bus("test")
        self.call(self.bus.connect(retry_for=10))
        self.store = ObjectStore(self.bus)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def running(self, node: str, pod_prefix: str) -> list[str]:
        """Pod names with a running container in ``node``'s own containerd."""

        async def q() -> list[str]:
            cri = CriClient(self.plan.node_containerd(node).address)
            try:
                cs = await cri.list_containers({"io.edgebus.node": node})
            finally:
                await cri.close()
            return sorted({c.labels["io.kubernetes.pod.name"] for c in cs if c.state == api.CONTAINER_RUNNING and c.labels.get("io.kubernetes.pod.name", "").startswith(pod_prefix)})

        return self.call(q())

    def close(self) -> None:
        try:
            self.call(self.bus.close())
            self.call(self.lab.down(), timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkloadLab]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    wl = WorkloadLab(tmp_path_factory.mktemp("workloads"))
    try:
        yield wl
    finally:
        wl.close()


@pytest.fixture(scope="module")
def k(lab: WorkloadLab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    kc = Kubectl(tmp_path_factory.mktemp("kubectl"), "cloud", lab.plan.apiserver_url, ca_file=lab.plan.ca_file, token=lab.plan.admin_token())
    wait_until(lambda: "edge-2" in kc.run("get", "nodes", check=False).stdout, timeout=30, msg="nodes")
    return kc


def template(name: str, placement: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {**placement, "terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"]}], **spec},
    }


def manifest(kind: str, name: str, placement: dict[str, Any], **spec: Any) -> str:
    body = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": name}}, "template": template(name, placement), **spec}}
    return yaml.safe_dump(body)


def pod_names(k: Kubectl, selector: str) -> list[str]:
    return sorted(k.out("get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}").split())


def live_pods(k: Kubectl, selector: str) -> list[str]:
    items = k.yaml("get", "pods", "-l", selector)["items"]
    return sorted(p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp"))


def test_deployment_scales_and_heals_on_an_edge_node(lab: WorkloadLab, k: Kubectl) -> None:
    assert "created" in k.out("apply", "-f", "-", stdin=manifest("Deployment", "web", PLACEMENT, replicas=2))
    assert "successfully rolled out" in k.out("rollout", "status", "deploy/web", "--timeout=90s")
    assert "condition met" in k.out("wait", "--for=condition=Available", "deploy/web", "--timeout=60s")
    wait_until(lambda: len(lab.running("edge-1", "web-")) == 2, timeout=30, msg="2 containers running on edge-1")
    header, rows = k.table("get", "deploy", "web", "-o", "wide")
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[0][:4] == ["web", "2/2", "2", "2"] and rows[0][5:] == ["main", BUSYBOX, "app=web"]
    # scale up and down (kubectl scale patches the scale subresource)
    assert "scaled" in k.out("scale", "deploy/web", "--replicas=4")
    k.out("rollout", "status", "deploy/web", "--timeout=90s")
    wait_until(lambda: len(lab.running("edge-1", "web-")) == 4, timeout=30, msg="4 running")
    assert k.yaml("get", "deploy/web", "--subresource=scale")["spec"]["replicas"] == 4
    k.out("scale", "deploy/web", "--replicas=1")
    wait_until(lambda: len(lab.running("edge-1", "web-")) == 1 and len(live_pods(k, "app=web")) == 1, timeout=60, msg="scaled down to 1")
    # a deleted pod is re-created (and runs)
    before = live_pods(k, "app=web")
    k.out("delete", "pod", before[0])
    wait_until(lambda: len(live_pods(k, "app=web")) == 1 and live_pods(k, "app=web") != before, timeout=30, msg="re-created")
    wait_until(lambda: lab.running("edge-1", "web-") == live_pods(k, "app=web"), timeout=30, msg="the new pod runs")
    events = k.out("get", "events", "--field-selector", "involvedObject.kind=ReplicaSet")
    assert "SuccessfulCreate" in events and "SuccessfulDelete" in events
    described = k.out("describe", "deploy", "web")
    assert "NewReplicaSet:" in described and "ScalingReplicaSet" in described and "MinimumReplicasAvailable" in described
    kinds = {ln.split()[0] for ln in k.out("get", "deploy,rs,ds,sts,job,cronjob", "-o", "wide").splitlines() if ln.strip() and not ln.startswith("NAME")}
    assert "deployment.apps/web" in kinds and any(x.startswith("replicaset.apps/web-") for x in kinds)


def test_rollout_history_undo_restart_pause(lab: WorkloadLab, k: Kubectl) -> None:
    k.out("apply", "-f", "-", stdin=manifest("Deployment", "api", PLACEMENT, replicas=2))
    k.out("rollout", "status", "deploy/api", "--timeout=90s")
    k.out("set", "env", "deploy/api", "VERSION=2")
    k.out("rollout", "status", "deploy/api", "--timeout=90s")
    history = k.out("rollout", "history", "deploy/api")
    assert [ln.split()[0] for ln in history.splitlines()[2:] if ln.strip()] == ["1", "2"]
    assert "rolled back" in k.out("rollout", "undo", "deploy/api")
    k.out("rollout", "status", "deploy/api", "--timeout=90s")
    d = k.yaml("get", "deploy/api")
    assert "env" not in d["spec"]["template"]["spec"]["containers"][0] and d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert k.out("get", "rs", "-l", "app=api", "-o", "jsonpath={.items[*].spec.replicas}").split().count("2") == 1
    k.out("rollout", "restart", "deploy/api")
    k.out("rollout", "status", "deploy/api", "--timeout=90s")
    pods = k.yaml("get", "pods", "-l", "app=api")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 2 and all("kubectl.kubernetes.io/restartedAt" in p["metadata"]["annotations"] for p in live)
    k.out("rollout", "pause", "deploy/api")
    k.out("set", "env", "deploy/api", "VERSION=4")
    time.sleep(1.5)
    assert k.out("get", "rs", "-l", "app=api", "-o", "name").count("replicaset") == 3  # no new ReplicaSet while paused
    assert "Progressing" in k.out("get", "deploy/api", "-o", "jsonpath={.status.conditions[?(@.reason=='DeploymentPaused')].type}")
    k.out("rollout", "resume", "deploy/api")
    k.out("rollout", "status", "deploy/api", "--timeout=90s")
    assert k.out("get", "rs", "-l", "app=api", "-o", "name").count("replicaset") == 4


def test_statefulset_pods_keep_their_names_through_repeated_deletion(lab: WorkloadLab, k: Kubectl) -> None:
    k.out("apply", "-f", "-", stdin=manifest("StatefulSet", "db", STS_PLACEMENT, replicas=2, serviceName="db"))
    k.out("rollout", "status", "sts/db", "--timeout=90s")
    wait_until(lambda: lab.running("edge-2", "db-") == ["db-0", "db-1"], timeout=30, msg="db-0 and db-1 running on edge-2")
    for _ in range(3):
        uid = k.out("get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}")
        k.out("delete", "pod", "db-0")
        wait_until(lambda: k.run("get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}:{.status.phase}", check=False).stdout.endswith(":Running")
                   and not k.out("get", "pod", "db-0", "-o", "jsonpath={.metadata.uid}").startswith(uid), timeout=60, msg="db-0 back")
        wait_until(lambda: lab.running("edge-2", "db-") == ["db-0", "db-1"], timeout=30, msg="db-0 runs again")
    assert k.table("get", "sts", "db")[1][0][:2] == ["db", "2/2"]
    k.out("scale", "sts/db", "--replicas=1")
    wait_until(lambda: live_pods(k, "app=db") == ["db-0"], timeout=60, msg="db-1 removed first")


def test_daemonset_on_every_node_and_a_node_that_joins_later(lab: WorkloadLab, k: Kubectl) -> None:
    k.out("apply", "-f", "-", stdin=manifest("DaemonSet", "agent", {}))
    k.out("rollout", "status", "ds/agent", "--timeout=90s")

    def on_nodes() -> dict[str, str]:
        items = k.yaml("get", "pods", "-l", "app=agent")["items"]
        return {p["spec"].get("nodeName", ""): p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")}

    wait_until(lambda: set(on_nodes()) == {"edge-1", "edge-2"}, timeout=30, msg="one pod on each node")
    for node, name in on_nodes().items():
        wait_until(lambda node=node, name=name: lab.running(node, "agent-") == [name], timeout=30, msg=f"agent running on {node}")
    lab.call(lab.lab.start_group("edge-3"), timeout=120)
    wait_until(lambda: "edge-3" in on_nodes(), timeout=60, msg="a pod for the node that joined")
    wait_until(lambda: lab.running("edge-3", "agent-") == [on_nodes()["edge-3"]], timeout=60, msg="running on edge-3")
    header, rows = k.table("get", "ds", "agent")
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
    wait_until(lambda: k.table("get", "ds", "agent")[1][0][1:6] == ["3", "3", "3", "3", "3"], timeout=60, msg="3 of 3")
    # a rolling update through ControllerRevisions, and back
    k.out("set", "env", "ds/agent", "MODE=x")
    k.out("rollout", "status", "ds/agent", "--timeout=120s")
    assert len(k.out("get", "controllerrevisions", "-l", "app=agent", "-o", "name").split()) == 2
    k.out("rollout", "undo", "ds/agent")
    k.out("rollout", "status", "ds/agent", "--timeout=120s")
    assert "env" not in k.yaml("get", "ds/agent")["spec"]["template"]["spec"]["containers"][0]


def test_job_runs_to_completion(lab: WorkloadLab, k: Kubectl) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": {"completions": 3, "parallelism": 2, "template": {"spec": {**PLACEMENT, "restartPolicy": "Never", "containers": [{"name": "pi", "image": BUSYBOX, "command": ["sh", "-c", "echo 3.14159"]}]}}},
    }
    k.out("apply", "-f", "-", stdin=yaml.safe_dump(job))
    assert "condition met" in k.out("wait", "--for=condition=complete", "job/pi", "--timeout=90s")
    row = k.table("get", "job", "pi")[1][0]
    assert row[:3] == ["pi", "Complete", "3/3"]
    pods = pod_names(k, "job-name=pi")
    assert len(pods) == 3
    assert k.out("logs", pods[0]).strip() == "3.14159"
    assert "Completed" in k.out("get", "events", "--field-selector", "involvedObject.name=pi")


def test_controllers_killed_mid_scale_lose_nothing(lab: WorkloadLab, k: Kubectl) -> None:
    """kill -9 of the deployment and replicaset controllers right after a scale-up was asked
    for (before or while they carry it out): restarted, they list everything again and end
    with exactly the wanted pods and one ReplicaSet."""
    k.out("apply", "-f", "-", stdin=manifest("Deployment", "burst", PLACEMENT, replicas=1))
    k.out("rollout", "status", "deploy/burst", "--timeout=90s")
    k.out("scale", "deploy/burst", "--replicas=6")
    procs = [lab.lab.procs[n] for n in ("cloud/replicasetcontroller", "cloud/deploymentcontroller")]
    for p in procs:
        assert p.popen is not None
        p.popen.kill()
        p.popen.wait(10)

    async def restart() -> None:  # as the lab's supervisor does for a process that died
        for p in procs:
            lab.lab._spawn(p)
        for p in procs:
            await lab.lab._wait_ready(p)

    lab.call(restart(), timeout=60)
    k.out("rollout", "status", "deploy/burst", "--timeout=50s")
    wait_until(lambda: len(live_pods(k, "app=burst")) == 6 and len(lab.running("edge-1", "burst-")) == 6, timeout=60, msg="6 pods, running")
    time.sleep(2)
    assert len(live_pods(k, "app=burst")) == 6 and len(k.out("get", "rs", "-l", "app=burst", "-o", "name").split()) == 1
    k.out("delete", "deploy", "burst", "--cascade=foreground", "--timeout=90s")


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_versions(lab: WorkloadLab, k: Kubectl, version: str, tmp_path: Path) -> None:
    binary = versioned_kubectls().get(version)
    if binary is None:
        pytest.skip(f"no kubectl {version}")
    kv = Kubectl(tmp_path, f"k{version}", lab.plan.apiserver_url, binary, ca_file=lab.plan.ca_file, token=lab.plan.admin_token())
    name = "v" + version.replace(".", "")
    # kubectl 1.32+ send this create as protobuf, 1.27 as JSON: the same Deployment either way
    kv.out("create", "deployment", name, f"--image={BUSYBOX}", "--replicas=1", "--", "sleep", "3600")
    container = kv.yaml("get", "deploy", name)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == BUSYBOX and container["command"] == ["sleep", "3600"] and container["name"] == "busybox"
    kv.out("patch", "deploy", name, "-p", yaml.safe_dump({"spec": {"template": {"spec": PLACEMENT}}}))
    kv.out("scale", f"deploy/{name}", "--replicas=2")
    assert "successfully rolled out" in kv.out("rollout", "status", f"deploy/{name}", "--timeout=90s")
    kv.out("set", "env", f"deploy/{name}", "X=1")
    kv.out("rollout", "status", f"deploy/{name}", "--timeout=90s")
    kv.out("rollout", "undo", f"deploy/{name}")
    kv.out("rollout", "status", f"deploy/{name}", "--timeout=90s")
    kv.out("rollout", "restart", f"deploy/{name}")
    kv.out("rollout", "status", f"deploy/{name}", "--timeout=90s")
    revisions = [ln.split()[0] for ln in kv.out("rollout", "history", f"deploy/{name}").splitlines()[2:] if ln.strip()]
    # created, patched (2), env (3), undo (2 becomes 4), restart (5)
    assert revisions == ["1", "3", "4", "5"]
    assert kv.table("get", "deploy", name, "-o", "wide")[1][0][1] == "2/2"
    kv.out("delete", "deploy", name, "--cascade=foreground", "--timeout=90s")
    assert pod_names(kv, f"app={name}") == []


def test_delete_cascades(lab: WorkloadLab, k: Kubectl) -> None:
    for name in ("fg", "orph"):
        k.out("apply", "-f", "-", stdin=manifest("Deployment", name, PLACEMENT, replicas=1))
        k.out("rollout", "status", f"deploy/{name}", "--timeout=90s")
    # foreground: kubectl waits until the pods, the ReplicaSet and then the Deployment are gone
    k.out("delete", "deploy", "fg", "--cascade=foreground", "--timeout=90s")
    assert pod_names(k, "app=fg") == [] and k.out("get", "rs", "-l", "app=fg", "-o", "name") == ""
    assert lab.running("edge-1", "fg-") == []
    # orphan: the ReplicaSet and its pod stay, without an owner
    k.out("delete", "deploy", "orph", "--cascade=orphan")
    wait_until(lambda: k.out("get", "rs", "-l", "app=orph", "-o", "jsonpath={.items[0].metadata.ownerReferences}") == "", timeout=30, msg="orphaned")
    assert len(lab.running("edge-1", "orph-")) == 1
    # background (the default): the Deployment goes at once, its ReplicaSets and pods after it
    k.out("delete", "deploy", "web")
    wait_until(lambda: pod_names(k, "app=web") == [] and lab.running("edge-1", "web-") == [], timeout=60, msg="web's pods collected")
    everything = k.out("get", "all", "-o", "name").split()
    assert "deployment.apps/web" not in everything
    assert {"deployment.apps/api", "statefulset.apps/db", "daemonset.apps/agent", "job.batch/pi", "pod/db-0"} <= set(everything)
