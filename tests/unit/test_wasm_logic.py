"""Pure pieces of Wasm pods: the CPU token bucket, CRI log records of a module's output,
image names of the module store, the runtime handler of a pod and of a node, and the
status of a pod past its activeDeadlineSeconds."""

from __future__ import annotations

import io
import threading

from edgebus.wasm.modules import normalize
from edgebus.wasm.worker import CpuBucket, LogWriter
from services.edged import node
from services.edged import spec as S
from services.edged.logs import parse
from services.edged.status import container_id, pod_status


def test_cpu_bucket_stops_a_module_over_its_share_only() -> None:
    b = CpuBucket(rate=0.2, burst=5.0)  # 200m, 1 CPU-second of burst
    # a module using 10% of a CPU (under its 20%) runs forever
    assert all(b.spend(0.005, 0.05) for _ in range(10_000))
    # a spinning one (100%) empties the bucket after ~1.25 s
    used = 0.0
    while b.spend(0.05, 0.05):
        used += 0.05
        assert used < 2.0
    assert 1.0 <= used <= 1.4


def test_log_writer_writes_cri_records_split_and_joined() -> None:
    f = io.BytesIO()
    lock = threading.Lock()
    out, err = LogWriter(f, lock, "stdout"), LogWriter(f, lock, "stderr")
    out.write(b"hel")
    out.write(b"lo\nwor")
    err.write(b"oops\n")
    out.write(b"x" * 20000)
    out.close()
    lines, used = parse(f.getvalue())
    assert used == len(f.getvalue())
    assert [(line.stream, line.content) for line in lines] == [("stdout", b"hello"), ("stderr", b"oops"), ("stdout", b"wor" + b"x" * 20000)]
    assert b" stdout P " in f.getvalue()  # the long line went out in parts


def test_image_names_normalize_as_containerd() -> None:
    assert normalize("hello") == "docker.io/library/hello:latest"
    assert normalize("me/hello:2") == "docker.io/me/hello:2"
    assert normalize("registry.local/tool:1") == "registry.local/tool:1"
    assert normalize("localhost/tool") == "localhost/tool:latest"


def test_runtime_handlers_of_pods_and_nodes() -> None:
    assert S.runtime_handler({"spec": {"runtimeClassName": "wasm"}}, ["wasm"]) == "wasm"
    assert S.runtime_handler({"spec": {"runtimeClassName": "gvisor"}}, ["wasm"]) is None
    assert S.runtime_handler({"spec": {}}, ["wasm"]) is None
    assert [h["name"] for h in node.runtime_handlers(True, "wasmtime://50.0.1")] == ["runc", "wasm"]
    assert [h["name"] for h in node.runtime_handlers(False, "wasmtime://50.0.1")] == ["wasm"]
    assert node.runtime_handlers(False, "") == []
    st = node.node_status(runtime_ok=False, runtime_version="", runtime_error="no socket", endpoint="unix:///x", max_pods=10, transition="", wasm="wasmtime://50.0.1")
    assert st["runtimeHandlers"] == [{"name": "wasm", "features": {"recursiveReadOnlyMounts": False, "userNamespaces": False}}]
    assert "Wasm pods run (wasmtime://50.0.1)" in st["conditions"][0]["message"]
    assert container_id("wasm-abc") == "wasm://wasm-abc" and container_id("0af3") == "containerd://0af3"


def test_a_pod_past_its_deadline_is_failed() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], "activeDeadlineSeconds": 5}}
    running = [{"name": "c", "ready": True, "state": {"running": {"startedAt": "t"}}}]
    ok = pod_status(pod, running, policy="Always", host_ip="h", pod_ip="h", start_time="t", previous=None, now="n")
    assert ok["phase"] == "Running"
    st = pod_status(pod, running, policy="Always", host_ip="h", pod_ip="h", start_time="t", previous=None, now="n", deadline_exceeded=True, reason="DeadlineExceeded", message="m")
    assert (st["phase"], st["reason"]) == ("Failed", "DeadlineExceeded")
    assert {c["type"]: (c["status"], c.get("reason")) for c in st["conditions"]}["Ready"] == ("False", "PodFailed")
