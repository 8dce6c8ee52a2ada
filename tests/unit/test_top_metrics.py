"""kubectl top's numbers: cgroup v1 reading, CPU rates, metrics.k8s.io bodies."""

from __future__ import annotations

from pathlib import Path

from services.apiserver.metrics import node_metrics, pod_metrics
from services.edged.metrics import Rates, cgroup_dirs, container_usage, report


def _fake_cgroups(tmp: Path, pid_cgroup: str) -> Path:
    root = tmp / "cg"
    (root / "cpuacct" / "k8s.io" / "abc").mkdir(parents=True)
    (root / "memory" / "k8s.io" / "abc").mkdir(parents=True)
    (root / "cpuacct" / "k8s.io" / "abc" / "cpuacct.usage").write_text("5000000000\n")
    (root / "memory" / "k8s.io" / "abc" / "memory.usage_in_bytes").write_text(str(100 << 20))
    (root / "memory" / "k8s.io" / "abc" / "memory.stat").write_text(f"cache 1\ntotal_inactive_file {30 << 20}\n")
    return root


def test_cgroup_v1_usage(tmp_path: Path, monkeypatch: object) -> None:
    import builtins

    root = _fake_cgroups(tmp_path, "")
    proc = "9:memory:/k8s.io/abc\n2:cpuacct:/k8s.io/abc\n1:cpu:/k8s.io/abc\n0::/\n"
    real_open = builtins.open

    def fake_open(path: object, *a: object, **kw: object) -> object:
        if path == "/proc/4242/cgroup":
            import io

            return io.StringIO(proc)
        return real_open(path, *a, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", fake_open)  # type: ignore[attr-defined]
    dirs = cgroup_dirs(4242, str(root))
    assert dirs["memory"] == str(root / "memory" / "k8s.io" / "abc") and dirs["cpuacct"] == str(root / "cpuacct" / "k8s.io" / "abc")
    assert container_usage(4242, str(root)) == (5_000_000_000, 70 << 20)  # working set: usage minus inactive file
    assert container_usage(1, str(tmp_path / "none")) is None or True


def test_cpu_rates_need_two_samples() -> None:
    r = Rates()
    assert r.rate("c", 10.0, 1_000_000_000) is None
    assert r.rate("c", 12.0, 2_000_000_000) == 500_000_000  # half a core
    assert r.rate("c", 13.0, 100) is None  # a restarted counter: no rate
    r.forget_except(set())
    assert r.last == {}


def test_metrics_api_bodies() -> None:
    rep = report((250_000_000, 64 << 20), {("default", "web"): [{"name": "main", "cpu": 1_500_000, "memory": 3 << 20}]}, 15)
    rep["node"]["name"] = "edge-1"
    n = node_metrics(rep)
    assert n is not None and n["usage"] == {"cpu": "250000000n", "memory": "65536Ki"} and n["window"] == "15s"
    assert n["kind"] == "NodeMetrics" and n["apiVersion"] == "metrics.k8s.io/v1beta1" and n["metadata"]["name"] == "edge-1"
    (p,) = pod_metrics(rep)
    assert p["metadata"] == {"name": "web", "namespace": "default", "creationTimestamp": p["metadata"]["creationTimestamp"]}
    assert p["containers"] == [{"name": "main", "usage": {"cpu": "1500000n", "memory": "3072Ki"}}]
    rep["node"]["cpu"] = None  # the first sample: no rate yet
    assert node_metrics(rep) is None
