"""The real kubectl with pods really running: a lab whose node runs a private containerd.
``kubectl logs`` and ``kubectl exec`` reach the container on the node through the
apiserver (over NATS to edged), and ``kubectl delete pod`` waits until the node has
stopped the containers (SIGTERM, then SIGKILL after the grace period) and confirmed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import wait_until

from .kubectl import KUBECTL, BackgroundLab, Kubectl, versioned_kubectls

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
    bl = BackgroundLab(tmp_path_factory.mktemp("kubectl-pods"), proxy=False, devices=False)
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
    assert "no -i/-t" in k.fails("exec", "-i", "talker", "--", "cat")
    # kubectl before 1.29 speaks only SPDY: a clear error, not a hang
    old = versioned_kubectls().get("1.28")
    if old is not None:
        err = k.other(tmp_path, "old", old).fails("exec", "talker", "--", "true")
        assert err.startswith("Error from server (BadRequest): exec needs the websocket streaming protocol of the cloud apiserver")


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
