"""``k8s/``: the cloud side on Kubernetes, each service scaled on its own.

* NATS: a 3-node StatefulSet (JetStream, domain ``cloud``, streams and KV buckets with 3
  replicas), a headless Service for clients and routes, and a ``nats-leaf`` Service that
  edge nodes dial.
* Every cloud service: a ConfigMap with its ``EDGEBUS_*`` settings (those ``edgebus up``
  gives it, addressed for the cluster), a Deployment with its own replica count, resources,
  ``/healthz`` and ``/readyz`` probes, and a Service with a named ``metrics`` port
  (ServiceMonitor-friendly).
* Edge nodes for a lab: a DaemonSet running one node per Kubernetes node (leaf nats-server,
  containerd, edgehub, metamanager, edged, devicetwin, mappers in one pod). Real edge nodes
  run ``edgebus``'s edge processes on the device itself; this layout is for labs only.

Commands and settings come from the lab's plan (:mod:`edgebus.deploy.plans`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebus.deploy.plans import API, IMAGE, IMAGE_CACHE, LEAF, MONITOR, NATS, OPS, ContainerPlan, ProcSpec, module_of, portable_argv
from edgebus.lab import LabPlan
from edgebus.natsd import HubConfig

NAMESPACE = "edgebus"
NATS_REPLICAS = 3
#: replicas of each cloud service (each scales on its own)
REPLICAS = {"apiserver": 2, "cloudhub": 2, "edgecontroller": 2, "devicecontroller": 2}
#: settings that differ on Kubernetes: JetStream R3 for every stream and bucket
R3 = {
    "apiserver": {"EDGEBUS_APISERVER__KV_REPLICAS": "3"},
    "cloudhub": {"EDGEBUS_CLOUDHUB__STREAM_REPLICAS": "3", "EDGEBUS_CLOUDHUB__KV_REPLICAS": "3"},
    "edgecontroller": {"EDGEBUS_EDGECONTROLLER__STREAM_REPLICAS": "3", "EDGEBUS_EDGECONTROLLER__KV_REPLICAS": "3"},
    "endpointcontroller": {"EDGEBUS_ENDPOINTCONTROLLER__KV_REPLICAS": "3"},
}
TOKEN_KEYS = {"EDGEBUS_CLOUDHUB__BOOTSTRAP_TOKENS": "bootstrap-tokens", "EDGEBUS_EDGEHUB__JOIN_TOKEN": "join-token"}
LABELS = {"app.kubernetes.io/part-of": "edgebus"}


class ClusterPlan(ContainerPlan):
    """Addresses inside the cluster: Services named ``nats``, ``nats-leaf``, ``apiserver``."""

    @property
    def cloud_nats_url(self) -> str:
        return f"nats://nats:{NATS}"

    @property
    def apiserver_url(self) -> str:
        return f"http://apiserver:{API}"


class PodPlan(LabPlan):
    """The lab DaemonSet's pod: one edge node whose processes share the pod's network, so
    they keep the lab's distinct ports (a node block from base port 4200), with data in /data."""

    def _dir(self, *parts: str) -> Path:
        return Path("/data", *parts)

    @property
    def internal_ip(self) -> str:
        return ""

    def node_nats_url(self, node: str) -> str:
        return f"nats://127.0.0.1:{self.node_nats_port(node)}"


POD_NODE = "edge-node"  # placeholder; the pod's EDGEBUS_NODE comes from spec.nodeName


def _meta(name: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": {**LABELS, **labels}}


def _configmap(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name), "data": dict(sorted(data.items()))}


def _probe(path: str, port: int | str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 6}


def nats_manifests() -> list[dict[str, Any]]:
    peers = [f"nats://nats-{i}.nats.{NAMESPACE}.svc:6222" for i in range(NATS_REPLICAS)]
    conf = HubConfig(
        store_dir="/data/js", port=NATS, leaf_port=LEAF, host="0.0.0.0", http_port=MONITOR, cluster_name="edgebus", routes=peers, name_from_env="POD_NAME"
    ).render()
    labels = {"app.kubernetes.io/name": "nats"}
    ports = [{"name": "client", "port": NATS}, {"name": "cluster", "port": 6222}, {"name": "monitor", "port": MONITOR}]
    return [
        _configmap("nats-config", {"nats.conf": conf}),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta("nats", **labels),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": labels, "ports": ports},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**_meta("nats-leaf", **labels), "annotations": {"edgebus.io/note": "edge nodes dial this; make it a LoadBalancer or NodePort to reach it from outside the cluster"}},
            "spec": {"selector": labels, "ports": [{"name": "leafnodes", "port": LEAF}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": _meta("nats", **labels),
            "spec": {
                "serviceName": "nats",
                "replicas": NATS_REPLICAS,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**LABELS, **labels}},
                    "spec": {
                        "containers": [
                            {
                                "name": "nats",
                                "image": IMAGE,
                                "command": ["nats-server", "-c", "/etc/nats/nats.conf"],
                                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                "ports": [{"name": "client", "containerPort": NATS}, {"name": "cluster", "containerPort": 6222}, {"name": "leafnodes", "containerPort": LEAF}, {"name": "monitor", "containerPort": MONITOR}],
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/nats"}, {"name": "data", "mountPath": "/data"}],
                                "livenessProbe": _probe("/healthz", MONITOR),
                                "readinessProbe": _probe("/healthz?js-enabled-only=true", MONITOR),
                                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "nats-config"}}],
                    },
                },
                "volumeClaimTemplates": [
                    {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}
                ],
            },
        },
    ]


def _env(spec: ProcSpec, extra: dict[str, str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The ConfigMap data, and env entries that come from the token Secret instead."""
    data = {k: v for k, v in {**spec.env, **extra}.items() if k not in TOKEN_KEYS}
    secret_env = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": "edgebus-tokens", "key": key}}} for k, key in TOKEN_KEYS.items() if k in spec.env
    ]
    return data, secret_env


def cloud_service_manifests(spec: ProcSpec) -> list[dict[str, Any]]:
    svc = (module_of(spec) or "").removeprefix("services.")
    labels = {"app.kubernetes.io/name": svc}
    data, secret_env = _env(spec, R3.get(svc, {}))
    port = int(data.get("EDGEBUS_APISERVER__PORT") or data.get("EDGEBUS_OPS__PORT") or OPS)
    ports = [{"name": "metrics", "containerPort": port}]
    if svc == "apiserver":
        ports = [{"name": "http", "containerPort": port}, {"name": "metrics", "containerPort": port}]
    container: dict[str, Any] = {
        "name": svc,
        "image": IMAGE,
        "command": portable_argv(spec),
        "envFrom": [{"configMapRef": {"name": f"edgebus-{svc}"}}],
        "ports": ports[-1:] if svc != "apiserver" else ports[:1],
        "livenessProbe": _probe("/healthz", port),
        "readinessProbe": _probe("/readyz", port),
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}},
    }
    if secret_env:
        container["env"] = secret_env
    service_ports = [{"name": "metrics", "port": port, "targetPort": port}]
    if svc == "apiserver":
        service_ports = [{"name": "http", "port": API, "targetPort": port}, {"name": "metrics", "port": 9091, "targetPort": port}]
    return [
        _configmap(f"edgebus-{svc}", data),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(svc, **labels),
            "spec": {
                "replicas": REPLICAS.get(svc, 2),
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**LABELS, **labels}, "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(port)}},
                    "spec": {"containers": [container], "terminationGracePeriodSeconds": 15},
                },
            },
        },
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(svc, **labels), "spec": {"selector": labels, "ports": service_ports}},
    ]


def edge_lab_manifests(devices: bool = True) -> list[dict[str, Any]]:
    plan = PodPlan(data_dir="/data", nodes=[POD_NODE], base_port=4200, host="0.0.0.0", containerd=True, secure=False, devices=devices, image_cache=IMAGE_CACHE)
    procs = [p for p in plan.node_processes(POD_NODE) if not p.name.endswith("/modbus-sim")]
    labels = {"app.kubernetes.io/name": "edge-lab"}
    node_env = {"name": "EDGEBUS_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    containers: list[dict[str, Any]] = []
    files: dict[str, str] = {}
    envs: dict[str, dict[str, str]] = {}
    for p in procs:
        name = p.name.split("/", 1)[1].replace(".", "-")
        c: dict[str, Any] = {"name": name, "image": IMAGE, "command": portable_argv(p), "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "run", "mountPath": "/run/edgebus"}]}
        if p.name.endswith("/nats"):
            c["command"] = ["nats-server", "-c", "/etc/nats/nats.conf"]
            c["volumeMounts"].append({"name": "nats-config", "mountPath": "/etc/nats"})
        elif p.config_file and p.config_text is not None:
            files[f"{name}.conf"] = p.config_text
            c["volumeMounts"].append({"name": "edge-config", "mountPath": p.config_file, "subPath": f"{name}.conf"})
        if p.ready_socket:
            c["securityContext"] = {"privileged": True}
        if p.env:
            data, secret_env = _env(p, {})
            data.pop("EDGEBUS_NODE", None)  # from spec.nodeName, below
            envs[f"edge-lab-{name}"] = data
            c["envFrom"] = [{"configMapRef": {"name": f"edge-lab-{name}"}}]
            c["env"] = [node_env, *secret_env]
        if p.ready_url:
            port = int(p.env.get("EDGEBUS_OPS__PORT", "0"))
            c["readinessProbe"] = _probe("/readyz", port)
            c["livenessProbe"] = _probe("/healthz", port)
            c["ports"] = [{"name": "metrics" if name == "edgehub" else name[:15], "containerPort": port}]
            if name == "metamanager":
                c["ports"].append({"name": "metaserver", "containerPort": int(p.env["EDGEBUS_METAMANAGER__METASERVER_PORT"])})
        containers.append(c)
    leaf_port = plan.node_nats_port(POD_NODE)
    init = {
        "name": "nats-config",
        "image": IMAGE,
        "command": ["python", "-m", "edgebus.natsd", "leaf", "--node", "$(EDGEBUS_NODE)", "--hub", f"nats-leaf://nats-leaf.{NAMESPACE}.svc:{LEAF}", "--store-dir", "/data/nats/js", "--port", str(leaf_port), "--mqtt-port", str(plan.node_mqtt_port(POD_NODE)), "--out", "/etc/nats/nats.conf"],
        "env": [node_env],
        "volumeMounts": [{"name": "nats-config", "mountPath": "/etc/nats"}],
    }
    out: list[dict[str, Any]] = []
    if files:
        out.append(_configmap("edge-lab-config", files))
    out += [_configmap(k, v) for k, v in sorted(envs.items())]
    out.append(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {**_meta("edge-lab", **labels), "annotations": {"edgebus.io/note": "lab only: real edge nodes run edgebus's edge processes on the device itself"}},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**LABELS, **labels}},
                    "spec": {
                        "initContainers": [init],
                        "containers": containers,
                        "volumes": [
                            {"name": "data", "emptyDir": {}},
                            {"name": "run", "emptyDir": {}},
                            {"name": "nats-config", "emptyDir": {}},
                            *([{"name": "edge-config", "configMap": {"name": "edge-lab-config"}}] if files else []),
                        ],
                    },
                },
            },
        }
    )
    return out


def render(devices: bool = True) -> dict[str, list[dict[str, Any]]]:
    """File name -> the manifests in it."""
    plan = ClusterPlan(data_dir="/data", nodes=["edge-1"], containerd=True, secure=False, devices=devices, image_cache=IMAGE_CACHE)
    files: dict[str, list[dict[str, Any]]] = {
        "namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": LABELS}}],
        "tokens.yaml": [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta("edgebus-tokens"),
                "type": "Opaque",
                "stringData": {"bootstrap-tokens": '["change-me"]', "join-token": "change-me"},
            }
        ],
        "nats.yaml": nats_manifests(),
    }
    for spec in plan.cloud_processes():
        mod = module_of(spec)
        if mod is None:
            continue
        files[f"{mod.removeprefix('services.')}.yaml"] = cloud_service_manifests(spec)
    files["edge-lab.yaml"] = edge_lab_manifests(devices)
    files["kustomization.yaml"] = [
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": NAMESPACE, "resources": [f for f in files if f != "kustomization.yaml"]}
    ]
    return files
