"""From a Pod spec to CRI requests (pure: no I/O).

Everything edged creates carries labels that say which node and pod it belongs to
(``io.edgebus.node``, ``io.kubernetes.pod.uid`` ...): edged lists the runtime filtered by
them, so two nodes sharing one containerd never adopt each other's pods, and after a
restart edged finds (adopts) exactly what it created before.

Pod networking through CNI is not supported yet: every pod runs in the node's network
namespace (as ``hostNetwork: true``), without its own hostname, and its podIP is the
node's address.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from edgebus.cri import api
from edgebus.objects.poddns import ResolvConf
from edgebus.objects.quantity import cpu_millis, memory_bytes, parse_quantity

LABEL_NODE = "io.edgebus.node"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER = "io.kubernetes.container.name"
ANN_HASH = "io.edgebus.container.hash"
ANN_GRACE = "io.edgebus.pod.terminationGracePeriod"
#: the runtime handler of a pod's sandbox (absent: containerd)
LABEL_HANDLER = "io.edgebus.runtime-handler"

RESTART_POLICIES = ("Always", "OnFailure", "Never")


class InvalidPod(ValueError):
    """The pod cannot be run at all (no uid, no containers): reported, never retried."""


class ConfigError(Exception):
    """A container cannot be configured yet (e.g. a ConfigMap it needs is missing).

    Shown as the waiting reason ``CreateContainerConfigError``; retried on every sync."""

    reason = "CreateContainerConfigError"


@dataclass(frozen=True, slots=True)
class PodRef:
    namespace: str
    name: str
    uid: str

    @property
    def dir_name(self) -> str:
        return f"{self.namespace}_{self.name}_{self.uid}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_ref(pod: dict[str, Any]) -> PodRef:
    md = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(md, dict):
        raise InvalidPod("pod has no metadata")
    ns, name, uid = md.get("namespace") or "default", md.get("name"), md.get("uid")
    if not isinstance(name, str) or not name or not isinstance(uid, str) or not uid:
        raise InvalidPod("pod needs metadata.name and metadata.uid")
    if not re.fullmatch(r"[A-Za-z0-9-]+", uid):
        raise InvalidPod(f"pod uid {uid!r} is not a UID")
    return PodRef(str(ns), name, uid)


def without_status(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod without its ``status``: what changes when its spec or metadata changes
    (metamanager overlays the status this node reported, so the status alone changes too)."""
    return {k: v for k, v in pod.items() if k != "status"}


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    out = [c for c in spec.get("containers") or [] if isinstance(c, dict) and isinstance(c.get("name"), str)]
    if not out:
        raise InvalidPod("pod has no containers")
    return out


def init_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod's init containers, in the order they run."""
    spec = pod.get("spec") or {}
    return [c for c in spec.get("initContainers") or [] if isinstance(c, dict) and isinstance(c.get("name"), str)]


def restart_policy(pod: dict[str, Any]) -> str:
    p = (pod.get("spec") or {}).get("restartPolicy") or "Always"
    return p if p in RESTART_POLICIES else "Always"


def grace_seconds(pod: dict[str, Any], default: int) -> int:
    """The termination grace period: the deletion's, else the spec's, else ``default``."""
    md = pod.get("metadata") or {}
    for v in (md.get("deletionGracePeriodSeconds"), (pod.get("spec") or {}).get("terminationGracePeriodSeconds")):
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
    return default


def terminating(pod: dict[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def pull_policy(container: dict[str, Any]) -> str:
    """Kubernetes' default: ``Always`` for ``:latest`` or no tag, else ``IfNotPresent``."""
    p = container.get("imagePullPolicy")
    if p in ("Always", "IfNotPresent", "Never"):
        return str(p)
    image = str(container.get("image") or "")
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def container_hash(container: dict[str, Any]) -> str:
    """Changes when the container's spec changes (its container is then replaced)."""
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- quantities (edgebus.objects.quantity) -----------------------------------------------


def linux_resources(container: dict[str, Any]) -> api.LinuxContainerResources:
    """CPU and memory limits (and CPU requests as shares), as the kubelet maps them."""
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    out = api.LinuxContainerResources(oom_score_adj=0)
    try:
        if "cpu" in limits:
            millis = cpu_millis(limits["cpu"])
            if millis > 0:
                out.cpu_period = 100_000
                out.cpu_quota = max(millis * 100, 1000)
        req = requests.get("cpu", limits.get("cpu"))
        out.cpu_shares = max(2, cpu_millis(req) * 1024 // 1000) if req is not None else 2
        if "memory" in limits:
            out.memory_limit_in_bytes = memory_bytes(limits["memory"])
    except ValueError as exc:
        raise ConfigError(f"resources: {exc}") from None
    return out


# -- environment -----------------------------------------------------------------------


@dataclass
class Sources:
    """ConfigMaps and Secrets of the pod's namespace, as the local store has them."""

    configmaps: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def configmap(self, name: str) -> dict[str, str] | None:
        cm = self.configmaps.get(name)
        if cm is None:
            return None
        data = {k: str(v) for k, v in (cm.get("data") or {}).items()}
        for k, v in (cm.get("binaryData") or {}).items():
            data[k] = base64.b64decode(v).decode("utf-8", errors="replace")
        return data

    def configmap_bytes(self, name: str) -> dict[str, bytes] | None:
        cm = self.configmaps.get(name)
        if cm is None:
            return None
        data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
        for k, v in (cm.get("binaryData") or {}).items():
            data[k] = base64.b64decode(v)
        return data

    def secret_bytes(self, name: str) -> dict[str, bytes] | None:
        s = self.secrets.get(name)
        if s is None:
            return None
        out = {}
        for k, v in (s.get("data") or {}).items():
            try:
                out[k] = base64.b64decode(v)
            except (ValueError, TypeError):
                out[k] = str(v).encode()
        return out

    def secret(self, name: str) -> dict[str, str] | None:
        b = self.secret_bytes(name)
        return None if b is None else {k: v.decode("utf-8", errors="replace") for k, v in b.items()}


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables are replaced, ``$$`` escapes,
    unknown references stay as written."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, s)


def field_ref(pod: dict[str, Any], path: str, *, node: str, host_ip: str, pod_ip: str) -> str:
    md = pod.get("metadata") or {}
    simple = {
        "metadata.name": md.get("name"),
        "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"),
        "spec.nodeName": node,
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.hostIP": host_ip,
        "status.podIP": pod_ip,
    }
    if path in simple:
        return str(simple[path] or "")
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError(f"unsupported fieldRef {path!r}")


def resolve_env(
    pod: dict[str, Any], container: dict[str, Any], sources: Sources, *, node: str, host_ip: str, pod_ip: str
) -> list[tuple[str, str]]:
    """The container's environment: ``envFrom`` first, then ``env`` (later wins), with
    ``$(VAR)`` references to earlier variables expanded."""
    env: dict[str, str] = {}
    for ef in container.get("envFrom") or []:
        if not isinstance(ef, dict):
            continue
        prefix = str(ef.get("prefix") or "")
        if isinstance(ef.get("configMapRef"), dict):
            ref = ef["configMapRef"]
            data = sources.configmap(str(ref.get("name")))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref.get("name")}" not found')
        elif isinstance(ef.get("secretRef"), dict):
            ref = ef["secretRef"]
            data = sources.secret(str(ref.get("name")))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref.get("name")}" not found')
        else:
            continue
        for k, v in data.items():
            env[prefix + k] = v
    for e in container.get("env") or []:
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            continue
        name = e["name"]
        if "valueFrom" not in e or e.get("valueFrom") is None:
            env[name] = expand(str(e.get("value") or ""), env)
            continue
        vf = e["valueFrom"] if isinstance(e["valueFrom"], dict) else {}
        if isinstance(vf.get("configMapKeyRef"), dict):
            ref = vf["configMapKeyRef"]
            data = sources.configmap(str(ref.get("name")))
            kind = "configmap"
        elif isinstance(vf.get("secretKeyRef"), dict):
            ref = vf["secretKeyRef"]
            data = sources.secret(str(ref.get("name")))
            kind = "secret"
        elif isinstance(vf.get("fieldRef"), dict):
            env[name] = field_ref(pod, str(vf["fieldRef"].get("fieldPath")), node=node, host_ip=host_ip, pod_ip=pod_ip)
            continue
        elif isinstance(vf.get("resourceFieldRef"), dict):
            env[name] = _resource_field(container, vf["resourceFieldRef"])
            continue
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom")
        key = str(ref.get("key"))
        if data is None or key not in data:
            if ref.get("optional"):
                continue
            what = f'{kind} "{ref.get("name")}" not found' if data is None else f'couldn\'t find key {key} in {kind} "{ref.get("name")}"'
            raise ConfigError(what)
        env[name] = data[key]
    return list(env.items())


def _resource_field(container: dict[str, Any], ref: dict[str, Any]) -> str:
    res = container.get("resources") or {}
    what = str(ref.get("resource") or "")
    section, _, kind = what.partition(".")
    v = (res.get(section) or {}).get(kind)
    if v is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor") or 1)
    q = parse_quantity(v) / divisor
    return str(int(q.to_integral_value(rounding="ROUND_CEILING")))


# -- CRI configs -----------------------------------------------------------------------


def labels(node: str, ref: PodRef, container: str | None = None) -> dict[str, str]:
    out = {LABEL_NODE: node, LABEL_POD_NAME: ref.name, LABEL_POD_NAMESPACE: ref.namespace, LABEL_POD_UID: ref.uid}
    if container is not None:
        out[LABEL_CONTAINER] = container
    return out


def runtime_handler(pod: dict[str, Any], wasm_classes: list[str] | tuple[str, ...]) -> str | None:
    """The runtime handler of the pod: ``wasm`` for a pod of a Wasm RuntimeClass, None (containerd) otherwise."""
    rc = (pod.get("spec") or {}).get("runtimeClassName")
    return "wasm" if rc and rc in wasm_classes else None


def sandbox_config(
    pod: dict[str, Any], node: str, attempt: int, log_dir: str, grace: int, dns: ResolvConf | None = None, handler: str | None = None
) -> api.PodSandboxConfig:
    """The sandbox of ``pod``; ``dns``: its resolv.conf (None: the runtime copies the node's);
    ``handler``: its runtime handler (None: containerd's)."""

    ref = pod_ref(pod)
    md = pod.get("metadata") or {}
    ann = {str(k): str(v) for k, v in (md.get("annotations") or {}).items()}
    ann[ANN_GRACE] = str(grace)
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=ref.name, namespace=ref.namespace, uid=ref.uid, attempt=attempt),
        log_directory=log_dir,
        dns_config=api.DNSConfig(servers=dns.servers, searches=dns.searches, options=dns.options) if dns is not None else None,
        labels={**labels(node, ref), **({LABEL_HANDLER: handler} if handler else {})},

        annotations=ann,
        linux=api.LinuxPodSandboxConfig(
            security_context=api.LinuxSandboxSecurityContext(
                namespace_options=api.NamespaceOption(network=api.NODE, pid=api.CONTAINER, ipc=api.POD),
            ),
        ),
    )


def container_config(
    pod: dict[str, Any],
    container: dict[str, Any],
    *,
    node: str,
    attempt: int,
    env: list[tuple[str, str]],
    mounts: list[api.Mount],
    grace: int,
) -> api.ContainerConfig:
    ref = pod_ref(pod)
    envmap = dict(env)
    command = [expand(str(x), envmap) for x in container.get("command") or []]
    args = [expand(str(x), envmap) for x in container.get("args") or []]
    sc = container.get("securityContext") or {}
    lsc = api.LinuxContainerSecurityContext(privileged=bool(sc.get("privileged")), readonly_rootfs=bool(sc.get("readOnlyRootFilesystem")))
    if isinstance(sc.get("runAsUser"), int):
        lsc.run_as_user.value = int(sc["runAsUser"])
    if isinstance(sc.get("runAsGroup"), int):
        lsc.run_as_group.value = int(sc["runAsGroup"])
    name = str(container["name"])
    return api.ContainerConfig(
        metadata=api.ContainerMetadata(name=name, attempt=attempt),
        image=api.ImageSpec(image=str(container.get("image") or "")),
        command=command,
        args=args,
        working_dir=str(container.get("workingDir") or ""),
        envs=[api.KeyValue(key=k, value=v) for k, v in env],
        mounts=mounts,
        labels=labels(node, ref, name),
        annotations={ANN_HASH: container_hash(container), ANN_GRACE: str(grace)},
        log_path=f"{name}/{attempt}.log",
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        tty=bool(container.get("tty")),
        linux=api.LinuxContainerConfig(resources=linux_resources(container), security_context=lsc),
    )


def mounts(container: dict[str, Any], volume_paths: dict[str, str], read_only_volumes: set[str]) -> list[api.Mount]:
    """Bind mounts for the container's ``volumeMounts`` (``subPath`` supported)."""
    out = []
    for vm in container.get("volumeMounts") or []:
        if not isinstance(vm, dict):
            continue
        vol, path = vm.get("name"), vm.get("mountPath")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"volumeMount {vol}: mountPath must be an absolute path")
        if vol not in volume_paths:
            raise ConfigError(f'volumeMount references volume "{vol}", which the pod does not define or which is not supported')
        host = volume_paths[str(vol)]
        sub = vm.get("subPath")
        if sub:
            if not isinstance(sub, str) or sub.startswith("/") or ".." in sub.split("/"):
                raise ConfigError(f"volumeMount {vol}: invalid subPath {sub!r}")
            host = host.rstrip("/") + "/" + sub
        out.append(
            api.Mount(
                container_path=path,
                host_path=host,
                readonly=bool(vm.get("readOnly")) or vol in read_only_volumes,
                propagation=api.PROPAGATION_PRIVATE,
            )
        )
    return out
