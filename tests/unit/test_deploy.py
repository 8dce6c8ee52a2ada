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
from edgebus.deploy.plans import LAB_DIR, container_plan, lab_plan, module_of, portable_argv, service_name
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


COMPOSE_FILES = pytest.mark.parametrize("file,all_in_one", [("docker-compose.yml", False), ("docker-compose.all-in-one.yml", True)])


@COMPOSE_FILES
def test_compose_file_is_valid_against_the_compose_spec(file: str, all_in_one: bool) -> None:
    doc = yaml.safe_load((ROOT / file).read_text())
    jsonschema.validate(doc, compose_schema())
    # and the schema really checks: a typo is caught
    bad = json.loads(json.dumps(doc))
    bad["services"]["cloud-nats"]["restartt"] = "always"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, compose_schema())


BOOT_STEPS = ("cloud-init", "cloud-token", "edge-1-join", "edge-2-join")


@COMPOSE_FILES
def test_compose_runs_what_the_lab_runs(file: str, all_in_one: bool) -> None:
    lab, box = lab_plan(2, all_in_one=all_in_one, secure=True).processes(), container_plan(2, all_in_one=all_in_one, secure=True).processes()
    doc = yaml.safe_load((ROOT / file).read_text())
    edge = {n for n in doc["services"] if n.startswith("edge-1-")}
    if all_in_one:  # the node's servers, its simulated device and one container for every edge service
        assert edge == {"edge-1-join", "edge-1-nats", "edge-1-containerd", "edge-1-allinone", "edge-1-modbus-sim"}
    else:
        assert {"edge-1-edgehub", "edge-1-metamanager", "edge-1-edged", "edge-1-mappers-modbus"} <= edge
    running = [n for n in doc["services"] if n not in BOOT_STEPS]
    assert [service_name(p.name) for p in lab] == running, "one container per lab process"
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
                # the same files, in the container's data dir
                assert env[k] == v.replace(LAB_DIR, "/data"), f"{lp.name}: {k} is {env[k]!r} in compose, {v!r} in the lab"
        assert svc["healthcheck"]["test"][0] == "CMD"
        assert "privileged" not in svc, "explicit capabilities instead"
    # every configuration file a container mounts exists
    for svc in doc["services"].values():
        for v in svc.get("volumes", []):
            if v.startswith("./") and not v.startswith("./.edgebus-compose"):
                assert (ROOT / v.split(":")[0]).exists(), v


@COMPOSE_FILES
def test_compose_is_secure_and_boots_in_order(file: str, all_in_one: bool) -> None:
    """The PKI before the cloud, a token once the cloud is up, each node joined before its
    server starts; TLS healthchecks; nodes see the cloud only through their NATS server."""
    doc = yaml.safe_load((ROOT / file).read_text())
    svcs = doc["services"]
    done = {"condition": "service_completed_successfully"}
    assert svcs["cloud-nats"]["depends_on"] == {"cloud-init": done}
    assert svcs["cloud-init"]["command"][:4] == ["python", "-m", "edgebus.deploy.boot", "cloud"] and svcs["cloud-init"]["restart"] == "no"
    assert "./.edgebus-compose:/host" in svcs["cloud-init"]["volumes"]
    assert set(svcs["cloud-token"]["depends_on"]) == {"cloud-apiserver", "cloud-cloudhub"} and "bootstrap:/bootstrap" in svcs["cloud-token"]["volumes"]
    for n in ("edge-1", "edge-2"):
        join = svcs[f"{n}-join"]
        assert join["depends_on"]["cloud-token"] == done and f"{n}-data:/data" in join["volumes"] and "bootstrap:/bootstrap:ro" in join["volumes"]
        assert not any(v.startswith("cloud-data") for v in join["volumes"]), "a node never sees the cloud's PKI"
        assert svcs[f"{n}-nats"]["depends_on"] == {f"{n}-join": done}
        assert svcs[f"{n}-nats"]["networks"] == [n, "cloud"]
        runner = f"{n}-allinone" if all_in_one else f"{n}-edged"
        assert svcs[runner]["network_mode"] == f"service:{n}-containerd", "pods and their prober share one network"
        assert "ports" not in svcs[runner] and any(":9090" in pt for pt in svcs[f"{n}-containerd"]["ports"])
        rt = svcs[f"{n}-containerd"]
        assert "SYS_ADMIN" in rt["cap_add"] and "/sys/fs/cgroup:/sys/fs/cgroup:rw" in rt["volumes"]
        for name, svc in svcs.items():
            if name.startswith(f"{n}-") and name not in (f"{n}-nats", f"{n}-join") and "networks" in svc:
                assert svc["networks"] == [n], f"{name} reaches the cloud only through the node's server"
    api = svcs["cloud-apiserver"]
    assert "https://127.0.0.1:8080/readyz" in api["healthcheck"]["test"][-1] and "cafile='/data/cloud/pki/ca.crt'" in api["healthcheck"]["test"][-1]
    assert api["environment"]["EDGEBUS_APISERVER__TLS_CERT_FILE"] == "/data/cloud/pki/server.crt" or api["environment"]["EDGEBUS_APISERVER__TLS_CERT_FILE"].startswith("/data/cloud/pki/")
    assert svcs["cloud-cloudhub"]["environment"]["EDGEBUS_CLOUDHUB__AUTO_REGISTER_NODES"] == "false"
    assert json.loads(svcs["cloud-cloudhub"]["environment"]["EDGEBUS_CLOUDHUB__LEAF_URLS"]) == ["nats-leaf://cloud-nats:7422"]
    # host ports: each from a variable (defaults: the lab's), listed in deploy/compose/ports.env
    assert api["ports"] == ["${EDGEBUS_BIND:-127.0.0.1}:${CLOUD_APISERVER_PORT:-14202}:8080"]
    env = dict(line.split("=", 1) for line in (ROOT / "deploy/compose/ports.env").read_text().splitlines() if line and not line.startswith("#"))
    used = {pt.split("${")[2].split(":-")[0] for svc in svcs.values() for pt in svc.get("ports", [])}
    assert used <= set(env) and env["CLOUD_APISERVER_PORT"] == "14202"


def test_boot_steps_make_a_secure_cloud_and_join_files(tmp_path: Path) -> None:
    """The cloud's boot step, pointed at a temporary data dir: the PKI, the hub config that
    names it, and the host's files (relative paths in lab.json, a kubeconfig with CA and token)."""
    from edgebus.deploy import boot
    from edgebus.deploy.plans import ContainerPlan

    plan = ContainerPlan(data_dir=str(tmp_path / "data"), nodes=["edge-1"], containerd=True, secure=True)
    host = tmp_path / "host"
    boot.cloud(plan, host, api_port=15202, nats_port=15200)
    conf = (tmp_path / "data" / "cloud" / "nats" / "nats.conf").read_text()
    assert "operator" in conf and "tls" in conf and str(tmp_path / "data" / "cloud" / "pki") in conf
    st = json.loads((host / "lab.json").read_text())
    assert st["apiserver"] == "https://127.0.0.1:15202" and st["ca_file"] == "ca.crt"
    kc = yaml.safe_load((host / "kubeconfig").read_text())
    assert kc["users"][0]["user"]["token"] == (host / "admin.token").read_text().strip()
    assert kc["clusters"][0]["cluster"]["certificate-authority-data"]
    assert (host / "admin.token").stat().st_mode & 0o777 == 0o600
    from edgebus.cli.client import api_token, ca_file

    assert ca_file(str(host)) == str(host / "ca.crt") and api_token(str(host)) == (host / "admin.token").read_text().strip()
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(plan.cloud_pki().server_cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"cloud-nats", "cloud-apiserver", "localhost"} <= set(sans.get_values_for_type(x509.DNSName))
    before = plan.cloud_pki().ca_file.read_bytes()
    boot.cloud(plan, host, api_port=15202, nats_port=15200)
    assert plan.cloud_pki().ca_file.read_bytes() == before, "idempotent: compose up again keeps the PKI"


def k8s_docs() -> list[dict]:
    out = []
    for p in sorted((ROOT / "k8s").glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(p.read_text()) if d]
    return out


def test_k8s_manifests_are_valid() -> None:
    docs = k8s_docs()
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "StatefulSet", "Deployment", "DaemonSet", "Service", "ConfigMap", "Job", "Kustomization"} <= kinds
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
    """The secure lab's processes, commands and settings (`edgebus up`): only addresses,
    ports and data paths differ."""
    docs = k8s_docs()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    lab = lab_plan(1, secure=True)
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
            if k in configmaps[f"edgebus-{svc}"] and not any(tag in k for tag in ADDRESSING) and LAB_DIR not in v:
                assert configmaps[f"edgebus-{svc}"][k] == v, k
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    # every stream and bucket is created with 3 replicas on the cluster
    assert configmaps["edgebus-cloudhub"]["EDGEBUS_CLOUDHUB__STREAM_REPLICAS"] == "3"
    svcs = [k for k in configmaps if k.startswith("edgebus-") and "EDGEBUS_NATS__URL" in configmaps[k]]
    assert len(svcs) >= 10 and all(configmaps[k]["EDGEBUS_NATS__REPLICAS"] == "3" for k in svcs)  # also leases, DLQ, every controller's bucket
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    names_ = [c["name"] for c in ds["spec"]["template"]["spec"]["containers"]]
    lab_node = [p.name.split("/", 1)[1].replace(".", "-") for p in lab.node_processes("edge-1") if not p.name.endswith("/modbus-sim")]
    assert names_ == lab_node
    for p, c in zip([p for p in lab.node_processes("edge-1") if not p.name.endswith("/modbus-sim")], ds["spec"]["template"]["spec"]["containers"], strict=True):
        env = set(configmaps.get(f"edge-lab-{c['name']}", {})) | {e["name"] for e in c.get("env", [])}
        assert set(p.env) <= env, f"{c['name']}: settings missing on Kubernetes: {set(p.env) - env}"


def _secret_refs(docs: list[dict]) -> dict[str, set[str]]:
    """Secret name -> the keys the manifests read from it."""
    out: dict[str, set[str]] = {}
    for d in docs:
        spec = (d.get("spec") or {}).get("template", {}).get("spec", {})
        for v in spec.get("volumes", []):
            if "secret" in v:
                out.setdefault(v["secret"]["secretName"], set()).update(i["key"] for i in v["secret"]["items"])
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    out.setdefault(ref["name"], set()).add(ref["key"])
    return out


def test_k8s_is_secure_by_default(tmp_path: Path) -> None:
    """No secret in k8s/; every credential from a Secret that `edgebus deploy k8s-secrets`
    writes, with exactly the keys read; each cloud service holds only its own credential;
    TLS on NATS' client, leafnode and route ports and on the apiserver; nodes join with a
    token, none is registered by a heartbeat."""
    from edgebus.deploy import k8s_secrets

    docs = k8s_docs()
    assert not any(d["kind"] == "Secret" for d in docs), "k8s/ is committed: no Secret in it"
    secrets = {d["metadata"]["name"]: d for d in k8s_secrets.render(tmp_path / "pki")}
    for d in secrets.values():
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    refs = _secret_refs(docs)
    assert set(refs) == set(secrets), "the manifests read exactly the Secrets the command writes"
    for name, keys in refs.items():
        assert keys <= set(secrets[name]["stringData"]), f"{name}: missing {keys - set(secrets[name]['stringData'])}"
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    assert "nats-config" not in configmaps, "the servers' config names the operator and TLS: it comes from the Secret"
    conf = secrets["edgebus-nats"]["stringData"]["nats.conf"]
    assert "operator:" in conf and "resolver {" in conf and "domain: \"cloud\"" in conf and "routes:" in conf
    assert conf.count("tls {") == 3 and conf.count("verify: true") == 2, "TLS on client, leafnode (client certificates) and route ports"
    creds = {n: {k for k in s["stringData"] if k.startswith("users__")} for n, s in secrets.items()}
    for name, keys in creds.items():
        svc = name.removeprefix("edgebus-").removesuffix("-pki")
        if name == "edgebus-cloudhub-pki":
            assert keys == {"users__cloudhub.creds", "users__system.creds"}
        elif name.endswith("-pki"):
            assert keys == {f"users__{svc}.creds"}, f"{svc} holds only its own credential"
    holders = {n for n, s in secrets.items() if "ca.key" in s["stringData"] or "node-signer.nk" in s["stringData"]}
    assert holders == {"edgebus-cloudhub-pki"}, "only the identity authority holds the CA key and the signing keys"
    hub = configmaps["edgebus-cloudhub"]
    assert hub["EDGEBUS_CLOUDHUB__AUTO_REGISTER_NODES"] == "false"
    assert json.loads(hub["EDGEBUS_CLOUDHUB__LEAF_URLS"]) == ["nats-leaf://nats-leaf.edgebus.svc:7422"]
    api = configmaps["edgebus-apiserver"]
    assert api["EDGEBUS_APISERVER__TLS_CERT_FILE"] == "/data/cloud/pki/server.crt" and api["EDGEBUS_NATS__CA_FILE"] == "/data/cloud/pki/ca.crt"
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "apiserver")
    assert dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    for name, cm in configmaps.items():
        if "EDGEBUS_NATS__URL" in cm and name.startswith("edgebus-"):
            assert cm.get("EDGEBUS_NATS__CREDS_FILE") and cm.get("EDGEBUS_NATS__CA_FILE"), f"{name} connects with a credential over TLS"
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(secrets["edgebus-nats"]["stringData"]["server.crt"].encode())
    sans = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    assert {"nats", "apiserver.edgebus.svc", "nats-leaf.edgebus.svc", "nats-2.nats.edgebus.svc"} <= sans
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    init = ds["spec"]["template"]["spec"]["initContainers"]
    assert [c["command"][:4] for c in init] == [["python", "-m", "edgebus.deploy.boot", "k8s-node"]]
    assert {"name": "join", "mountPath": "/bootstrap", "readOnly": True} in init[0]["volumeMounts"]
    tok = secrets["edgebus-join"]["stringData"]["token"]
    from edgebus.identity.tokens import Token

    assert Token.parse(tok).ca_pin == json.loads((tmp_path / "pki" / "cloud" / "pki" / "identity.json").read_text())["caPin"], "the token pins the CA"
    again = {d["metadata"]["name"]: d for d in k8s_secrets.render(tmp_path / "pki")}
    assert again["edgebus-join"] == secrets["edgebus-join"], "idempotent: the token is kept"
    for f in ("ca.crt", "server.crt", "server.key"):
        assert again["edgebus-nats"]["stringData"][f] == secrets["edgebus-nats"]["stringData"][f], "idempotent: the PKI is kept"


def test_k8s_authority_files_are_the_pki_s(tmp_path: Path) -> None:
    """cloudhub's Secret carries every file of the authority the PKI has (a new one in
    CloudPki would otherwise be missing on Kubernetes)."""
    from edgebus.deploy import k8s_secrets

    p = k8s_secrets.ensure_pki(tmp_path)
    have = {str(f.relative_to(p.dir)) for f in p.dir.rglob("*") if f.is_file()}
    served = {"server.crt", "server.key", "keys/sa.key"} | {f for f in have if f.startswith("users/")}
    assert set(k8s.AUTHORITY_FILES) == have - served


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


def test_k8s_edge_pod_settings_hold_for_any_node_name() -> None:
    """The lab pod's settings are rendered once for every pod: with ``$(EDGEBUS_NODE)`` set to
    a pod's Kubernetes node, each container gets what the join step's plan for that node
    gives it (same paths, the node's own inbox prefix), and the server reads the config the
    join step writes."""
    docs = k8s_docs()
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    real = k8s.pod_plan("worker-7")
    procs = {p.name.split("/", 1)[1].replace(".", "-"): p for p in real.node_processes("worker-7") if not p.name.endswith("/modbus-sim")}
    for c in ds["spec"]["template"]["spec"]["containers"]:
        p = procs[c["name"]]
        assert c["command"] == portable_argv(p)
        if not p.env:
            continue
        env = dict(configmaps[f"edge-lab-{c['name']}"])
        for e in c["env"]:
            env[e["name"]] = "worker-7" if "valueFrom" in e else e["value"].replace("$(EDGEBUS_NODE)", "worker-7")
        if "EDGEBUS_NODE" not in p.env:
            env.pop("EDGEBUS_NODE")
        assert env == p.env, c["name"]
    nats = procs["nats"]
    assert nats.config_file == "/data/node/nats/nats.conf"
    assert real.leaf_urls["worker-7"] == "nats-leaf://nats-leaf.edgebus.svc:7422" and real.apiserver_url == "https://apiserver.edgebus.svc:8080"
