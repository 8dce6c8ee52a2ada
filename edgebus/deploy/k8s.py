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

Commands and settings come from the lab's plan (:mod:`edgebus.deploy.plans`), secure as
``edgebus up`` and compose are: every credential, key and certificate comes from a Secret
(written by ``edgebus deploy k8s-secrets``, :mod:`edgebus.deploy.k8s_secrets`, never
committed), TLS on every listener that crosses hosts (client, leafnode and route ports of
NATS, the apiserver), nodes join with a bootstrap token (no auto-registration), and each
cloud service sees only its own credential.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import json
from dataclasses import dataclass

from edgebus.deploy.plans import API, IMAGE, IMAGE_CACHE, LEAF, MONITOR, NATS, OPS, ContainerPlan, ProcSpec, RenderOnly, module_of, portable_argv
from edgebus.identity.cloud import CloudPki
from edgebus.lab import CLOUD_USERS
from edgebus.natsd import HubAuth, HubConfig

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
    "scheduler": {"EDGEBUS_SCHEDULER__KV_REPLICAS": "3"},
}
LABELS = {"app.kubernetes.io/part-of": "edgebus"}
#: where the cloud's trust material is inside every cloud container (a Secret's files)
PKI_ROOT = "/data/cloud/pki"
#: the names the cloud's server certificate must carry: the Services clients, nodes and
#: the NATS routes dial, short and qualified
SERVER_HOSTS = [
    *(f"{h}{d}" for h in ("nats", "nats-leaf", "apiserver") for d in ("", f".{NAMESPACE}", f".{NAMESPACE}.svc", f".{NAMESPACE}.svc.cluster.local")),
    *(f"nats-{i}.nats{d}" for i in range(NATS_REPLICAS) for d in (f".{NAMESPACE}.svc", f".{NAMESPACE}.svc.cluster.local")),
    "localhost",
    "127.0.0.1",
]


class ClusterPlan(ContainerPlan):
    """Addresses inside the cluster: Services named ``nats``, ``nats-leaf``, ``apiserver``."""

    @property
    def cloud_nats_url(self) -> str:
        return f"nats://nats:{NATS}"

    def api_url(self, port: int | None = None) -> str:
        return f"{'https' if self.secure and self.tls else 'http'}://apiserver:{port or API}"

    @property
    def leaf_urls_for_nodes(self) -> str:
        return f"nats-leaf://nats-leaf.{NAMESPACE}.svc:{LEAF}"

    def cloud_pki(self) -> CloudPki:
        return CloudPki.ensure(self.cloud_pki_dir, hosts=SERVER_HOSTS, users=CLOUD_USERS)


@dataclass
class PodPlan(RenderOnly):
    """The lab DaemonSet's pod: one edge node whose processes share the pod's network, so
    they keep the lab's distinct ports (a node block from base port 4200), with data in
    ``/data/node`` whatever the node's name (known only when the pod runs: its Kubernetes
    node's), so the rendered paths hold for every pod."""

    def __post_init__(self) -> None:
        self.leaf_urls = {n: f"nats-leaf://nats-leaf.{NAMESPACE}.svc:{LEAF}" for n in self.nodes}

    def _dir(self, *parts: str) -> Path:
        if parts[:1] == ("nodes",):
            parts = ("node", *parts[2:])
        return Path(self.data_dir, *parts)

    @property
    def apiserver_url(self) -> str:
        return f"https://apiserver.{NAMESPACE}.svc:{API}"

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


def _probe(path: str, port: int | str, *, https: bool = False) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path, "port": port, **({"scheme": "HTTPS"} if https else {})}
    return {"httpGet": get, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 6}


#: the cloud's Secrets (``edgebus deploy k8s-secrets`` writes them)
NATS_SECRET = "edgebus-nats"
ADMIN_SECRET = "edgebus-admin"
JOIN_SECRET = "edgebus-join"
RESOLVER_DIR = "/data/cloud/nats/resolver"
#: cloudhub is the identity authority: the CA's key and the NATS signing keys, beside its own credentials
AUTHORITY_FILES = (
    "ca.crt",
    "ca.key",
    "identity.json",
    "operator.jwt",
    "keys/sa.pub",
    *(f"{k}.nk" for k in ("operator", "operator-signer", "sys-account", "account", "account-signer", "node-signer", "site-signer")),
)


def service_secret(svc: str) -> str:
    return f"edgebus-{svc}-pki"


def secret_key(rel: str) -> str:
    """A file's key in a Secret (keys cannot hold ``/``): ``users/apiserver.creds`` -> ``users__apiserver.creds``."""
    return rel.replace("/", "__")


def pki_files(spec: ProcSpec) -> list[str]:
    """The files under :data:`PKI_ROOT` a cloud service's settings name (its Secret's items)."""
    out: set[str] = set()
    for v in spec.env.values():
        vals = json.loads(v) if v.startswith("[") else [v]
        for x in vals:
            if isinstance(x, str) and x == PKI_ROOT:
                out |= set(AUTHORITY_FILES)
            elif isinstance(x, str) and x.startswith(PKI_ROOT + "/"):
                out.add(x.removeprefix(PKI_ROOT + "/"))
    return sorted(out)


def _secret_volume(name: str, secret: str, files: list[str], mode: int = 0o400) -> dict[str, Any]:
    return {"name": name, "secret": {"secretName": secret, "defaultMode": mode, "items": [{"key": secret_key(f), "path": f} for f in files]}}


def hub_config(auth: HubAuth | None) -> HubConfig:
    """The cloud servers' config (one for all three: each takes its name from ``POD_NAME``)."""
    peers = [f"nats://nats-{i}.nats.{NAMESPACE}.svc:6222" for i in range(NATS_REPLICAS)]
    return HubConfig(
        store_dir="/data/js", port=NATS, leaf_port=LEAF, host="0.0.0.0", http_port=MONITOR, cluster_name="edgebus", routes=peers, name_from_env="POD_NAME", auth=auth
    )


def nats_manifests() -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "nats"}
    ports = [{"name": "client", "port": NATS}, {"name": "cluster", "port": 6222}]
    return [
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
                                "volumeMounts": [
                                    {"name": "config", "mountPath": "/etc/nats", "readOnly": True},
                                    {"name": "data", "mountPath": "/data"},
                                    {"name": "pki", "mountPath": PKI_ROOT, "readOnly": True},
                                ],
                                "livenessProbe": _probe("/healthz", MONITOR),
                                "readinessProbe": _probe("/healthz?js-enabled-only=true", MONITOR),
                                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
                            }
                        ],
                        "volumes": [
                            _secret_volume("config", NATS_SECRET, ["nats.conf"]),
                            _secret_volume("pki", NATS_SECRET, ["ca.crt", "server.crt", "server.key"]),
                        ],
                    },
                },
                "volumeClaimTemplates": [
                    {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}
                ],
            },
        },
    ]


def cloud_service_manifests(spec: ProcSpec) -> list[dict[str, Any]]:
    svc = (module_of(spec) or "").removeprefix("services.")
    labels = {"app.kubernetes.io/name": svc}
    # every stream and bucket a service creates in the cloud's domain has NATS_REPLICAS
    # replicas (the lease bucket, the DLQ, each controller's objects bucket...)
    data = {**spec.env, **R3.get(svc, {}), "EDGEBUS_NATS__REPLICAS": str(NATS_REPLICAS)}
    files = pki_files(spec)

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
        "livenessProbe": _probe("/healthz", port, https="EDGEBUS_APISERVER__TLS_CERT_FILE" in data),
        "readinessProbe": _probe("/readyz", port, https="EDGEBUS_APISERVER__TLS_CERT_FILE" in data),
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}},
    }
    if files:
        container["volumeMounts"] = [{"name": "pki", "mountPath": PKI_ROOT, "readOnly": True}]
    pod_spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": 15, "automountServiceAccountToken": False}
    if files:
        pod_spec["volumes"] = [_secret_volume("pki", service_secret(svc), files)]
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
                    "spec": pod_spec,
                },
            },
        },
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(svc, **labels), "spec": {"selector": labels, "ports": service_ports}},
    ]


def pod_plan(node: str = "edge-node", *, devices: bool = True) -> PodPlan:
    """The lab pod's plan (``node``: the placeholder when rendering, the real name in the pod)."""
    return PodPlan(data_dir="/data", nodes=[node], base_port=4200, host="0.0.0.0", containerd=True, secure=True, devices=devices, image_cache=IMAGE_CACHE, pod_dns=False)


def _node_env(p: ProcSpec, node_env: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The ConfigMap data, and the settings that name the node (from ``$(EDGEBUS_NODE)``, which
    is the pod's Kubernetes node)."""
    data, named = {}, [node_env]
    for k, v in p.env.items():
        if k == "EDGEBUS_NODE":
            continue
        if POD_NODE in v:
            named.append({"name": k, "value": v.replace(POD_NODE, "$(EDGEBUS_NODE)")})
        else:
            data[k] = v
    return data, named


def edge_lab_manifests(devices: bool = True) -> list[dict[str, Any]]:
    plan = pod_plan(POD_NODE, devices=devices)
    procs = [p for p in plan.node_processes(POD_NODE) if not p.name.endswith("/modbus-sim")]
    labels = {"app.kubernetes.io/name": "edge-lab"}
    node_env = {"name": "EDGEBUS_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
    containers: list[dict[str, Any]] = []
    files: dict[str, str] = {}
    envs: dict[str, dict[str, str]] = {}
    for p in procs:
        name = p.name.split("/", 1)[1].replace(".", "-")
        c: dict[str, Any] = {"name": name, "image": IMAGE, "command": portable_argv(p), "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "run", "mountPath": "/run/edgebus"}]}
        if p.config_file and p.config_text is not None:
            files[f"{name}.conf"] = p.config_text
            c["volumeMounts"].append({"name": "edge-config", "mountPath": p.config_file, "subPath": f"{name}.conf"})
        # (the node's nats-server config names its credential: written by the join step)
        if p.ready_socket:
            c["securityContext"] = {"privileged": True}
        if p.env:
            data, named = _node_env(p, node_env)
            envs[f"edge-lab-{name}"] = data
            c["envFrom"] = [{"configMapRef": {"name": f"edge-lab-{name}"}}]
            c["env"] = named
        if p.ready_url:
            port = int(p.env.get("EDGEBUS_OPS__PORT", "0"))
            c["readinessProbe"] = _probe("/readyz", port)
            c["livenessProbe"] = _probe("/healthz", port)
            c["ports"] = [{"name": "metrics" if name == "edgehub" else name[:15], "containerPort": port}]
            if name == "metamanager":
                c["ports"].append({"name": "metaserver", "containerPort": int(p.env["EDGEBUS_METAMANAGER__METASERVER_PORT"])})
        containers.append(c)
    join = {
        "name": "join",
        "image": IMAGE,
        "command": ["python", "-m", "edgebus.deploy.boot", "k8s-node", *([] if devices else ["--no-devices"])],
        "env": [node_env],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "join", "mountPath": "/bootstrap", "readOnly": True}],
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
                        "initContainers": [join],
                        "containers": containers,
                        "automountServiceAccountToken": False,
                        "volumes": [
                            {"name": "data", "emptyDir": {}},
                            {"name": "run", "emptyDir": {}},
                            _secret_volume("join", JOIN_SECRET, ["token"]),
                            *([{"name": "edge-config", "configMap": {"name": "edge-lab-config"}}] if files else []),
                        ],
                    },
                },
            },
        }
    )
    return out


def token_job() -> dict[str, Any]:
    """Registers the bootstrap token ``edgebus deploy k8s-secrets`` made, once the cloud is up
    (as ``edgebus token create`` would), with the admin's credential: the edge pods join with it."""
    labels = {"app.kubernetes.io/name": "bootstrap-token"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta("bootstrap-token", **labels),
        "spec": {
            "backoffLimit": 30,
            "template": {
                "metadata": {"labels": {**LABELS, **labels}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "token",
                            "image": IMAGE,
                            "command": ["python", "-m", "edgebus.deploy.boot", "k8s-token"],
                            "volumeMounts": [{"name": "admin", "mountPath": PKI_ROOT, "readOnly": True}, {"name": "token", "mountPath": "/bootstrap", "readOnly": True}],
                        }
                    ],
                    "volumes": [
                        _secret_volume("admin", ADMIN_SECRET, ["ca.crt", "users/admin.creds"]),
                        _secret_volume("token", ADMIN_SECRET, ["bootstrap-token.json"]),
                    ],
                },
            },
        },
    }


def cluster_plan(data_dir: str = "/data", *, devices: bool = True) -> ClusterPlan:
    return ClusterPlan(data_dir=data_dir, nodes=["edge-1"], containerd=True, secure=True, devices=devices, image_cache=IMAGE_CACHE)


def render(devices: bool = True) -> dict[str, list[dict[str, Any]]]:
    """File name -> the manifests in it (no secret among them: see :mod:`edgebus.deploy.k8s_secrets`)."""
    plan = cluster_plan(devices=devices)
    files: dict[str, list[dict[str, Any]]] = {
        "namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": LABELS}}],
        "nats.yaml": nats_manifests(),
    }
    for spec in plan.cloud_processes():
        mod = module_of(spec)
        if mod is None:
            continue
        files[f"{mod.removeprefix('services.')}.yaml"] = cloud_service_manifests(spec)
    files["bootstrap-token.yaml"] = [token_job()]
    files["edge-lab.yaml"] = edge_lab_manifests(devices)
    files["kustomization.yaml"] = [
        {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": NAMESPACE, "resources": [f for f in files if f != "kustomization.yaml"]}
    ]
    return files
