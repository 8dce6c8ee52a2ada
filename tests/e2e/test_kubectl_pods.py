"""The real kubectl with pods really running: a lab whose node runs a private containerd.
``kubectl logs`` and ``kubectl exec`` reach the container on the node through the
apiserver (over NATS to edged), and (with ``kubectl port-forward``) through the node's own
metaserver with the node's link to the cloud cut; ``kubectl delete pod`` waits until the node has stopped the
containers (SIGTERM, then SIGKILL after the grace period) and confirmed."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import wait_until

from .kubectl import KUBECTL, BackgroundLab, Kubectl, versioned_kubectls
from .test_pods import cut, link

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")]

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: talker, namespace: default}
spec:
  nodeName: edge-1
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: docker.io/library/busybox:edgebus
      command: [sh, -c, 'echo hello from edge-1; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']
---
apiVersion: v1
kind: Pod
metadata: {name: stubborn, namespace: default}
spec:
  nodeName: edge-1
  terminationGracePeriodSeconds: 3
  containers:
    - name: main
      image: docker.io/library/busybox:edgebus
      command: [sh, -c, 'trap "echo ignoring TERM" TERM; while true; do sleep 0.1; done']
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundLab]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    bl = BackgroundLab(tmp_path_factory.mktemp("kubectl-pods"), proxy=True, devices=False)
    try:
        yield bl
    finally:
        bl.close()


@pytest.fixture(scope="module")
def k(lab: BackgroundLab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    kc = Kubectl(tmp_path_factory.mktemp("kubectl"), "cloud", lab.rl.lab.plan.apiserver_url, ca_file=lab.rl.lab.plan.ca_file, token=lab.rl.lab.plan.admin_token())
    kc.run("apply", "-f", "-", stdin=PODS)
    for name in ("talker", "stubborn"):
        wait_until(lambda name=name: kc.out("get", "pod", name, "-o", "jsonpath={.status.phase}") == "Running", timeout=60, msg=f"{name} Running")
    return kc


def test_logs(k: Kubectl) -> None:
    wait_until(lambda: "tick 3" in k.out("logs", "talker"), timeout=15, msg="three ticks logged")
    lines = k.out("logs", "talker").splitlines()
    assert lines[:2] == ["hello from edge-1", "tick 1"]
    assert len(k.out("logs", "talker", "--tail", "1").splitlines()) == 1
    assert k.out("logs", "talker", "-c", "main", "--timestamps").splitlines()[0].endswith(" hello from edge-1")
    assert k.fails("logs", "talker", "-c", "nope") == "error: container nope is not valid for pod talker"


def test_exec(k: Kubectl, tmp_path: Path) -> None:
    assert k.out("exec", "talker", "--", "echo", "hi there").strip() == "hi there"
    cp = k.run("exec", "talker", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert cp.returncode == 3 and cp.stdout == "out\n"
    assert cp.stderr.splitlines() == ["err", "command terminated with exit code 3"]
    assert k.out("exec", "-i", "talker", "--", "cat", stdin="piped\n") == "piped\n"
    # kubectl before 1.29 speaks only SPDY: the same
    old = versioned_kubectls().get("1.28")
    if old is not None:
        cp = k.other(tmp_path, "old", old).run("exec", "talker", "--", "sh", "-c", "echo old; exit 2", check=False)
        assert cp.returncode == 2 and cp.stdout == "old\n"


def test_exec_and_logs_through_the_node_offline(lab: BackgroundLab, k: Kubectl, tmp_path: Path) -> None:
    """The node's metaserver streams exec and logs from its own edged: no cloud needed."""
    plan = lab.rl.lab.plan
    ident = plan.node_identity("edge-1")
    edge = Kubectl(tmp_path, "edge", f"https://127.0.0.1:{plan.metaserver_port('edge-1')}", ca_file=str(ident.metaserver_ca_file), token=ident.admin_token_file.read_text().strip())
    wait_until(lambda: "talker" in edge.out("get", "pods"), timeout=20, msg="talker in the node's metaserver")
    lab.call(cut(lab.rl))
    try:
        assert edge.out("exec", "talker", "--", "echo", "from the node").strip() == "from the node"
        cp = edge.run("exec", "talker", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
        assert cp.returncode == 3 and cp.stdout == "out\n"
        assert cp.stderr.splitlines() == ["err", "command terminated with exit code 3"]
        assert edge.out("exec", "-i", "talker", "--", "cat", stdin="piped offline\n") == "piped offline\n"
        old = versioned_kubectls().get("1.28")
        if old is not None:  # SPDY/3.1
            cp = edge.other(tmp_path, "edge-old", old).run("exec", "talker", "--", "sh", "-c", "echo old; exit 2", check=False)
            assert cp.returncode == 2 and cp.stdout == "old\n"
        assert edge.out("logs", "talker").splitlines()[:2] == ["hello from edge-1", "tick 1"]
        assert len(edge.out("logs", "talker", "--tail", "2").splitlines()) == 2
        assert edge.fails("exec", "nope", "--", "true") == 'Error from server (NotFound): pods "nope" not found'
        assert lab.call(link(lab.rl)) == "down"
    finally:
        assert lab.rl.proxy is not None
        lab.rl.proxy.heal()
        wait_until(lambda: lab.call(link(lab.rl)) == "up", timeout=30, msg="the link back up")


WEB = """
apiVersion: v1
kind: Pod
metadata: {name: edgeweb, namespace: default}
spec:
  nodeName: edge-1
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: docker.io/library/busybox:edgebus
      command: [sh, -c, 'mkdir -p /w && echo edge page > /w/index.html && head -c 500000 /dev/urandom > /w/blob && httpd -f -p 127.0.0.1:18941 -h /w']
"""
WEB_PORT, DEAD_PORT = 18941, 18949  # nothing in the pod listens on DEAD_PORT


class PortForward:
    """``kubectl port-forward pod/P :R ...`` running in the background: which local port forwards which."""

    def __init__(self, k: Kubectl, pod: str, *remote: int) -> None:
        argv = k.argv("port-forward", f"pod/{pod}", *(f":{r}" for r in remote))
        i = argv.index("--request-timeout")  # it would cut the forwarding
        self.proc = subprocess.Popen(argv[:i] + argv[i + 2 :], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.ports: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(self.ports) < len(remote) and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line):
                self.ports[int(m.group(2))] = int(m.group(1))
        if set(self.ports) != set(remote):
            raise AssertionError(f"kubectl port-forward: {self.ports} {self.stop()}")

    def get(self, remote: int, path: str = "/index.html") -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[remote]}{path}", timeout=30) as r:
            return bytes(r.read())

    def stop(self) -> str:
        """Stops kubectl (if it still runs); its standard error."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.communicate(timeout=15)[1]


def test_port_forward_through_the_node_offline(lab: BackgroundLab, k: Kubectl, tmp_path: Path) -> None:
    """kubectl port-forward against the node's metaserver with the node cut off from the
    cloud: the websocket tunnel (1.33) and SPDY/3.1 (1.27) reach a port inside the pod
    (edged's CRI PortForward); a port nothing listens on is an error kubectl reports, and the
    metaserver serves on."""
    plan = lab.rl.lab.plan
    ident = plan.node_identity("edge-1")
    edge = Kubectl(tmp_path, "edge", f"https://127.0.0.1:{plan.metaserver_port('edge-1')}", ca_file=str(ident.metaserver_ca_file), token=ident.admin_token_file.read_text().strip())
    k.run("apply", "-f", "-", stdin=WEB)
    wait_until(lambda: edge.out("get", "pod", "edgeweb", "-o", "jsonpath={.status.phase}") == "Running", timeout=60, msg="edgeweb Running on the node")
    want = k.out("exec", "edgeweb", "--", "sha256sum", "/w/blob").split()[0]
    lab.call(cut(lab.rl))
    try:
        for version in ("1.33", "1.27"):
            binary = versioned_kubectls().get(version)
            if binary is None:
                continue
            old = edge.other(tmp_path, f"edge-{version}", binary)
            pf = PortForward(old, "edgeweb", WEB_PORT)
            try:
                assert pf.get(WEB_PORT) == b"edge page\n", version
                with ThreadPoolExecutor(5) as ex:
                    blobs = list(ex.map(lambda _: pf.get(WEB_PORT, "/blob"), range(5)))
                assert {hashlib.sha256(b).hexdigest() for b in blobs} == {want}, version
            finally:
                pf.stop()
        # the bad case: nothing listens on the port in the pod
        bad = PortForward(edge, "edgeweb", WEB_PORT, DEAD_PORT)
        try:
            with pytest.raises(OSError):
                bad.get(DEAD_PORT)
        finally:
            err = bad.stop()
        assert f"error forwarding port {DEAD_PORT} to pod" in err, err
        assert "connection refused" in err, err
        # the metaserver serves on: another forward, reads, exec
        pf = PortForward(edge, "edgeweb", WEB_PORT)
        try:
            assert pf.get(WEB_PORT) == b"edge page\n"
        finally:
            pf.stop()
        assert "edgeweb" in edge.out("get", "pods")
        assert lab.call(link(lab.rl)) == "down"
    finally:
        assert lab.rl.proxy is not None
        lab.rl.proxy.heal()
        wait_until(lambda: lab.call(link(lab.rl)) == "up", timeout=30, msg="the link back up")
        k.run("delete", "pod", "edgeweb", "--wait=false", check=False)


def test_graceful_delete_waits_for_the_node(k: Kubectl) -> None:
    t0 = time.monotonic()
    assert k.out("delete", "pod", "stubborn", "--wait=false").strip() == 'pod "stubborn" deleted'
    head, rows = k.table("get", "pod", "stubborn")
    assert rows[0][:3] == ["stubborn", "1/1", "Terminating"]
    # the container ignores SIGTERM: the node kills it after the 3 s grace period, then confirms
    k.run("wait", "--for=delete", "pod/stubborn", "--timeout=30s")
    elapsed = time.monotonic() - t0
    assert 2.5 <= elapsed < 20, elapsed
    assert k.fails("get", "pod", "stubborn") == 'Error from server (NotFound): pods "stubborn" not found'
    # kubectl delete (waiting, its default) returns once the node has confirmed
    assert k.out("delete", "pod", "talker").strip() == 'pod "talker" deleted'
    assert k.fails("get", "pod", "talker") == 'Error from server (NotFound): pods "talker" not found'


INIT = """
apiVersion: v1
kind: Pod
metadata: {name: initialized, namespace: default}
spec:
  nodeName: edge-1
  terminationGracePeriodSeconds: 1
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
    - {name: slow, image: docker.io/library/busybox:edgebus, command: [sh, -c, 'sleep 3; echo slow >> /work/log'], volumeMounts: [{name: work, mountPath: /work}]}
    - {name: fast, image: docker.io/library/busybox:edgebus, command: [sh, -c, 'echo fast >> /work/log'], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
    - {name: main, image: docker.io/library/busybox:edgebus, command: [sh, -c, 'cat /work/log; sleep 3600'], volumeMounts: [{name: work, mountPath: /work}]}
"""


def test_init_containers_run_in_order(k: Kubectl) -> None:
    k.run("apply", "-f", "-", stdin=INIT)
    seen: set[str] = set()

    def running() -> bool:
        _, rows = k.table("get", "pod", "initialized")
        seen.add(rows[0][2])
        return rows[0][2] == "Running"

    wait_until(running, timeout=60, msg="initialized Running")
    assert seen & {"Init:0/2", "Init:1/2"}, seen
    assert k.out("logs", "initialized").split() == ["slow", "fast"]
    inits = k.yaml("get", "pod", "initialized")["status"]["initContainerStatuses"]
    assert [(s["name"], s["state"]["terminated"]["reason"]) for s in inits] == [("slow", "Completed"), ("fast", "Completed")]
    k.run("delete", "pod", "initialized", "--grace-period=0", "--force")
