"""docker-compose.yml and k8s/ are valid (Compose spec, Kubernetes schemas), and run exactly
what `edgebus up` runs: no drift."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from edgebus.deploy import compose, k8s
from edgebus.deploy.plans import container_plan, lab_plan, module_of, portable_argv, service_name
from edgebus.deploy.render import drift

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"

#: settings whose values legitimately differ between the lab and containers: addresses,
#: ports, data paths (everything else must be identical)
ADDRESSING = ("URL", "HOST", "PORT", "DATA_DIR", "INTERNAL_IP", "CONTAINERD", "PRELOAD_IMAGES")


def test_committed_files_match_the_plan() -> None:
    assert drift("compose", ROOT) == [], "run `edgebus deploy compose`"
    assert drift("k8s", ROOT) == [], "run `edgebus deploy k8s`"


def compose_schema() -> dict:
    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(path.read_text())


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    jsonschema.validate(doc, compose_schema())
    # and the schema really checks: a typo is caught
    bad = json.loads(json.dumps(doc))
    bad["services"]["cloud-nats"]["restartt"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, compose_schema())


def test_compose_runs_what_the_lab_runs() -> None:
    lab, box = lab_plan(2).processes(), container_plan(2).processes()
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert [service_name(p.name) for p in lab] == list(doc["services"]), "one container per lab process"
    for lp, bp in zip(lab, box, strict=True):
        svc = doc["services"][service_name(lp.name)]
        assert svc["command"] == portable_argv(bp)
        # the same command as the lab, up to paths and ports
        la, ba = portable_argv(lp), svc["command"]
        assert len(la) == len(ba) and [a for a in la if not any(ch.isdigit() or "/" in a for ch in a)] == [a for a in ba if not any(ch.isdigit() or "/" in a for ch in a)]
        env = svc.get("environment", {})
        assert set(env) == set(lp.env), f"{lp.name}: settings differ from the lab's"
        for k, v in lp.env.items():
            if not any(tag in k for tag in ADDRESSING):
                assert env[k] == v, f"{lp.name}: {k} is {env[k]!r} in compose, {v!r} in the lab"
        assert svc["healthcheck"]["test"][0] == "CMD"
    # every configuration file a container mounts exists
    for svc in doc["services"].values():
        for v in svc.get("volumes", []):
            if v.startswith("./"):
                assert (ROOT / v.split(":")[0]).exists(), v


def k8s_docs() -> list[dict]:
    out = []
    for p in sorted((ROOT / "k8s").glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(p.read_text()) if d]
    return out


def test_k8s_manifests_are_valid() -> None:
    docs = k8s_docs()
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "StatefulSet", "Deployment", "DaemonSet", "Service", "ConfigMap", "Secret", "Kustomization"} <= kinds
    for d in docs:
        if d["kind"] == "Kustomization":
            for r in d["resources"]:
                assert (ROOT / "k8s" / r).exists(), r
            continue
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    bad = next(d for d in docs if d["kind"] == "Deployment")
    bad = json.loads(json.dumps(bad))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_k8s_runs_what_the_lab_runs() -> None:
    docs = k8s_docs()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    lab = lab_plan(1)
    for p in lab.cloud_processes():
        mod = module_of(p)
        if mod is None:
            continue
        svc = mod.removeprefix("services.")
        dep = deployments[svc]
        assert dep["spec"]["replicas"] >= 2, "every cloud service runs replicated"
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == portable_argv(p)
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        env = set(configmaps[f"edgebus-{svc}"]) | {e["name"] for e in c.get("env", [])}
        assert set(p.env) <= env, f"{svc}: settings missing on Kubernetes: {set(p.env) - env}"
        for k, v in p.env.items():
            if k in configmaps[f"edgebus-{svc}"] and not any(tag in k for tag in ADDRESSING):
                assert configmaps[f"edgebus-{svc}"][k] == v
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    conf = configmaps["nats-config"]["nats.conf"]
    assert "domain: \"cloud\"" in conf and "routes:" in conf and "no_advertise: true" in conf
    # every stream and bucket is created with 3 replicas on the cluster
    assert configmaps["edgebus-cloudhub"]["EDGEBUS_CLOUDHUB__STREAM_REPLICAS"] == "3"
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    names_ = [c["name"] for c in ds["spec"]["template"]["spec"]["containers"]]
    lab_node = [p.name.split("/", 1)[1].replace(".", "-") for p in lab.node_processes("edge-1") if not p.name.endswith("/modbus-sim")]
    assert names_ == lab_node


def test_every_command_exists() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = [svc["command"] for svc in doc["services"].values()]
    for d in k8s_docs():
        spec = (d.get("spec") or {}).get("template", {}).get("spec", {})
        commands += [c["command"] for c in spec.get("containers", []) + spec.get("initContainers", [])]
    for cmd in commands:
        if cmd[0] == "python":
            assert cmd[1] == "-m" and importlib.util.find_spec(cmd[2]) is not None, cmd
        else:
            assert cmd[0] in ("nats-server", "containerd"), cmd
    assert "python -m edgebus.images" in (ROOT / "Dockerfile").read_text()


def test_renderers_are_deterministic() -> None:
    assert compose.render(2) == compose.render(2)
    assert k8s.render() == k8s.render()
