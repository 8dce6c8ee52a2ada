"""edged's pure status and restart rules, the CRI log format, and the offline images."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from edgebus.images import ImageSpec, build_layer, manifest_digest, oci_archive
from services.edged import logs
from services.edged.images import archive_images
from services.edged.status import EXITED, RUNNING, CState, Waiting, backoff_delay, container_status, phase, pod_status, restart_at, restart_wanted

S = 1_000_000_000


def c(state: str, *, attempt: int = 0, exit_code: int = 0, started: float = 100, finished: float = 101) -> CState:
    return CState(id=f"id{attempt}", name="app", attempt=attempt, state=state, started_at=int(started * S), finished_at=int(finished * S) if state == EXITED else 0, exit_code=exit_code, image_ref="sha256:x")


@pytest.mark.parametrize(
    ("policy", "code", "want"),
    [("Always", 0, True), ("Always", 1, True), ("OnFailure", 0, False), ("OnFailure", 2, True), ("Never", 1, False), ("Never", 0, False)],
)
def test_restart_policy(policy: str, code: int, want: bool) -> None:
    assert restart_wanted(policy, c(EXITED, exit_code=code)) is want


def test_backoff_is_immediate_then_doubles_to_a_cap() -> None:
    assert [backoff_delay(n, 10, 300) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    # after attempt n exited at t=101 (ran 1 s): next start at 101 + delay(n)
    assert [restart_at(c(EXITED, attempt=n), initial=1, cap=8, reset=600) for n in range(5)] == [101, 102, 103, 105, 109]
    # a container that ran longer than the reset period restarts at once
    long_run = c(EXITED, attempt=6, started=50, finished=700)
    assert restart_at(long_run, initial=1, cap=8, reset=600) == 700


def spec() -> dict:
    return {"name": "app", "image": "busybox:x"}


def test_container_states() -> None:
    waiting = container_status(spec(), None, None, None, ready=False, started=False, will_restart=False)
    assert waiting["state"] == {"waiting": {"reason": "ContainerCreating"}} and waiting["restartCount"] == 0
    pull = container_status(spec(), None, None, Waiting("ErrImagePull", "no such host"), ready=False, started=False, will_restart=False)
    assert pull["state"]["waiting"] == {"reason": "ErrImagePull", "message": "no such host"}
    running = container_status(spec(), c(RUNNING, attempt=2), c(EXITED, attempt=1, exit_code=3), None, ready=True, started=True, will_restart=False)
    assert running["ready"] and running["restartCount"] == 2 and "running" in running["state"]
    assert running["lastState"]["terminated"]["exitCode"] == 3 and running["imageID"] == "sha256:x"
    crash = container_status(spec(), c(EXITED, attempt=1, exit_code=1), None, None, ready=False, started=False, will_restart=True)
    assert crash["state"]["waiting"]["reason"] == "CrashLoopBackOff" and crash["lastState"]["terminated"]["reason"] == "Error"
    done = container_status(spec(), c(EXITED, exit_code=0), None, None, ready=False, started=False, will_restart=False)
    assert done["state"]["terminated"]["reason"] == "Completed"


def st(state: dict, last: dict | None = None) -> dict:
    return {"state": state, "lastState": last or {}, "ready": "running" in state}


@pytest.mark.parametrize(
    ("statuses", "policy", "want"),
    [
        ([st({"waiting": {}})], "Always", "Pending"),
        ([st({"running": {}})], "Always", "Running"),
        ([st({"running": {}}), st({"waiting": {}})], "Always", "Pending"),
        ([st({"terminated": {"exitCode": 0}})], "Never", "Succeeded"),
        ([st({"terminated": {"exitCode": 7}})], "Never", "Failed"),
        ([st({"terminated": {"exitCode": 0}})], "OnFailure", "Succeeded"),
        ([st({"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"exitCode": 1}})], "OnFailure", "Running"),
        ([st({"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"exitCode": 1}})], "Always", "Running"),
    ],
)
def test_phase(statuses: list, policy: str, want: str) -> None:
    assert phase(statuses, policy) == want


def test_pod_status_is_stable_and_transitions_move_only_on_change() -> None:
    pod = {"spec": {"containers": [{"name": "app", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}
    cs = [container_status(spec(), c(RUNNING), None, None, ready=True, started=True, will_restart=False)]
    a = pod_status(pod, cs, policy="Always", host_ip="10.0.0.1", pod_ip="10.0.0.1", start_time="T0", previous=None, now="T1")
    b = pod_status(pod, cs, policy="Always", host_ip="10.0.0.1", pod_ip="10.0.0.1", start_time="T0", previous=a, now="T2")
    assert a == b, "same observations, same status (nothing to publish)"
    assert a["qosClass"] == "Guaranteed" and a["phase"] == "Running"
    assert {x["type"]: x["status"] for x in a["conditions"]} == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True", "Ready": "True"}
    cs2 = [container_status(spec(), c(RUNNING), None, None, ready=False, started=True, will_restart=False)]
    d = pod_status(pod, cs2, policy="Always", host_ip="10.0.0.1", pod_ip="10.0.0.1", start_time="T0", previous=b, now="T3")
    ready = next(x for x in d["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False" and ready["lastTransitionTime"] == "T3"
    assert next(x for x in d["conditions"] if x["type"] == "PodScheduled")["lastTransitionTime"] == "T1"


# -- CRI log files -----------------------------------------------------------------------


def test_log_parse_joins_partial_lines_and_keeps_incomplete_records(tmp_path: Path) -> None:
    data = b"2026-01-01T00:00:00.1Z stdout P hel\n2026-01-01T00:00:00.2Z stdout F lo\n2026-01-01T00:00:01Z stderr F err\n2026-01-01T00:00:02Z stdout F trunc"
    lines, consumed = logs.parse(data)
    assert [(x.stream, x.content) for x in lines] == [("stdout", b"hello"), ("stderr", b"err")]
    assert consumed == data.rindex(b"\n") + 1
    f = tmp_path / "0.log"
    f.write_bytes(b"".join(f"2026-01-01T00:00:0{i}.123456789Z stdout F line-{i}\n".encode() for i in range(6)))
    out, off = logs.read(f, tail=2)
    assert out == b"line-4\nline-5\n" and off == f.stat().st_size
    out, _ = logs.read(f, tail=1, timestamps=True)
    assert out == b"2026-01-01T00:00:05.123456789Z line-5\n"
    out, _ = logs.read(f, limit_bytes=14)
    assert out == b"line-5\n", "the end is kept, whole lines only"
    since = logs.time_ns("2026-01-01T00:00:04Z")
    assert logs.read(f, since_ns=since)[0] == b"line-4\nline-5\n"
    follower = logs.Follower(f, off)
    assert follower.poll() == b""
    with open(f, "ab") as fh:
        fh.write(b"2026-01-01T00:00:07Z stdout P par")
    assert follower.poll() == b""
    with open(f, "ab") as fh:
        fh.write(b"\n2026-01-01T00:00:07Z stdout F tial\n")
    assert follower.poll() == b"partial\n"


# -- offline images ------------------------------------------------------------------------


def test_oci_archive_is_reproducible_and_named(tmp_path: Path) -> None:
    layer = build_layer(b"\x7fELF fake busybox")
    a = oci_archive(ImageSpec("docker.io/library/busybox:edgebus"), layer)
    b = oci_archive(ImageSpec("docker.io/library/busybox:edgebus"), build_layer(b"\x7fELF fake busybox"))
    assert a == b and manifest_digest(a).startswith("sha256:")
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert "oci-layout" in names and sum(n.startswith("blobs/sha256/") for n in names) == 3
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:edgebus"
    p = tmp_path / "img.tar"
    p.write_bytes(a)
    assert archive_images(p) == ["docker.io/library/busybox:edgebus"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox" and members["bin/busybox"].mode == 0o755
    assert archive_images(tmp_path / "missing.tar") == []
