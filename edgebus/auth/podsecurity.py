"""Pod Security Admission: the Kubernetes Pod Security Standards (``privileged``,
``baseline``, ``restricted``, version ``latest``) enforced on pod create and update.

A namespace's level is its label ``pod-security.kubernetes.io/enforce``; a namespace
without one gets the server's default (edgebus: ``baseline``). A pod that violates its
level is refused with Kubernetes' message::

    pods "web" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes
    (volume "host"), privileged (container "c" must not set securityContext.privileged=true)

Pure: the checks read only the pod spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from edgebus.errors import Forbidden

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")
BASELINE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)
SAFE_SYSCTLS = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
     "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
)  # fmt: skip
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"})
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})


def namespace_level(namespace: dict[str, Any] | None, default: str) -> str:
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    level = labels.get(ENFORCE_LABEL) if isinstance(labels, dict) else None
    return level if level in LEVELS else default


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                yield c


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    sc = obj.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _who(kind: str, names: list[str]) -> str:
    plural = kind + ("s" if len(names) > 1 else "")
    return f"{plural} " + ", ".join(f'"{n}"' for n in names)


def _group(names: list[str], what: str, kind: str = "container") -> str:
    return f"{_who(kind, names)} must{what}"


_DROP_ALL = ' set securityContext.capabilities.drop=["ALL"]'
_SECCOMP = ' set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'
_Q = '"'


def _quoted(xs: list[str]) -> str:
    return ", ".join(f"{_Q}{x}{_Q}" for x in xs)


def baseline(spec: dict[str, Any]) -> list[str]:
    out: list[str] = []
    host = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k) is True]
    if host:
        out.append(f"host namespaces ({', '.join(host)})")
    cs = list(_containers(spec))
    priv = [str(c.get("name")) for c in cs if _sc(c).get("privileged") is True]
    if priv:
        out.append(f"privileged ({_group(priv, ' not set securityContext.privileged=true')})")
    caps: dict[str, list[str]] = {}
    for c in cs:
        for cap in (_sc(c).get("capabilities") or {}).get("add") or []:
            if isinstance(cap, str) and cap not in BASELINE_CAPABILITIES:
                caps.setdefault(str(c.get("name")), []).append(cap)
    if caps:
        parts = [f'container "{n}" must not include {_quoted(xs)} in securityContext.capabilities.add' for n, xs in caps.items()]
        out.append(f"non-default capabilities ({'; '.join(parts)})")
    hp = [str(v.get("name")) for v in spec.get("volumes") or [] if isinstance(v, dict) and "hostPath" in v]
    if hp:
        out.append(f"hostPath volumes ({_who('volume', hp)})")
    ports = []
    for c in cs:
        used = [str(p["hostPort"]) for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort")]
        if used:
            ports.append(f'container "{c.get("name")}" uses hostPort{"s" if len(used) > 1 else ""} {", ".join(used)}')
    if ports:
        out.append(f"hostPort ({'; '.join(ports)})")
    se = []
    for owner, sc in [("pod", _sc(spec)), *((f'container "{c.get("name")}"', _sc(c)) for c in cs)]:
        opts = sc.get("seLinuxOptions") or {}
        if isinstance(opts, dict) and (opts.get("type", "") not in _SELINUX_TYPES or opts.get("user") or opts.get("role")):
            se.append(owner)
    if se:
        out.append(f"seLinuxOptions ({', '.join(se)} set forbidden securityContext.seLinuxOptions)")
    proc = [str(c.get("name")) for c in cs if _sc(c).get("procMount") not in (None, "Default")]
    if proc:
        out.append(f"procMount ({_group(proc, ' not set securityContext.procMount')})")
    unconfined = []
    if ((_sc(spec).get("seccompProfile") or {}).get("type")) == "Unconfined":
        unconfined.append("pod")
    unconfined += [f'container "{c.get("name")}"' for c in cs if (_sc(c).get("seccompProfile") or {}).get("type") == "Unconfined"]
    if unconfined:
        out.append(f'seccompProfile ({", ".join(unconfined)} must not set securityContext.seccompProfile.type to "Unconfined")')
    ann = ((spec.get("__metadata") or {}).get("annotations")) or {}
    apparmor = [k.rsplit("/", 1)[1] for k, v in ann.items() if k.startswith("container.apparmor.security.beta.kubernetes.io/") and v == "unconfined"]
    apparmor += [str(c.get("name")) for c in cs if (_sc(c).get("appArmorProfile") or {}).get("type") == "Unconfined"]
    if (_sc(spec).get("appArmorProfile") or {}).get("type") == "Unconfined":
        apparmor.insert(0, "pod")
    if apparmor:
        out.append(f'appArmorProfile ({", ".join(apparmor)} must not set AppArmor profile type to "Unconfined")')
    bad = [s.get("name") for s in _sc(spec).get("sysctls") or [] if isinstance(s, dict) and s.get("name") not in SAFE_SYSCTLS]
    if bad:
        out.append(f"forbidden sysctls ({', '.join(str(b) for b in bad)})")
    return out


def restricted(spec: dict[str, Any]) -> list[str]:
    out = baseline(spec)
    vols = [(str(v.get("name")), t) for v in spec.get("volumes") or [] if isinstance(v, dict) for t in v if t != "name" and t not in RESTRICTED_VOLUMES]
    if vols:
        parts = ", ".join(f'"{n}" uses restricted volume type "{t}"' for n, t in vols)
        out.append(f"restricted volume types (volume{'s' if len(vols) > 1 else ''} {parts})")
    cs = list(_containers(spec))
    pod_sc = _sc(spec)
    esc = [str(c.get("name")) for c in cs if _sc(c).get("allowPrivilegeEscalation") is not False]
    if esc:
        out.append(f"allowPrivilegeEscalation != false ({_group(esc, ' set securityContext.allowPrivilegeEscalation=false')})")
    drop = [str(c.get("name")) for c in cs if "ALL" not in ((_sc(c).get("capabilities") or {}).get("drop") or [])]
    add = [(str(c.get("name")), [x for x in (_sc(c).get("capabilities") or {}).get("add") or [] if x != "NET_BIND_SERVICE"]) for c in cs]
    add = [(n, xs) for n, xs in add if xs]
    caps = []
    if drop:
        caps.append(_group(drop, _DROP_ALL))
    for n, xs in add:
        caps.append(f'container "{n}" must not include {_quoted(xs)} in securityContext.capabilities.add')
    if caps:
        out.append(f"unrestricted capabilities ({'; '.join(caps)})")
    if pod_sc.get("runAsNonRoot") is not True:
        nonroot = [str(c.get("name")) for c in cs if _sc(c).get("runAsNonRoot") is not True]
        if nonroot:
            out.append(f"runAsNonRoot != true (pod or {_group(nonroot, ' set securityContext.runAsNonRoot=true')})")
    root = [str(c.get("name")) for c in cs if _sc(c).get("runAsUser") == 0]
    if pod_sc.get("runAsUser") == 0:
        out.append("runAsUser=0 (pod must not set runAsUser=0)")
    elif root:
        out.append(f"runAsUser=0 ({_group(root, ' not set runAsUser=0')})")
    if (pod_sc.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        missing = [str(c.get("name")) for c in cs if (_sc(c).get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost")]
        if missing:
            out.append(f"seccompProfile (pod or {_group(missing, _SECCOMP)})")
    return out


def violations(pod: dict[str, Any], level: str) -> list[str]:
    """What ``pod`` does that ``level`` forbids (empty: allowed)."""
    spec = pod.get("spec")
    if level == "privileged" or not isinstance(spec, dict):
        return []
    spec = {**spec, "__metadata": pod.get("metadata") or {}}
    return restricted(spec) if level == "restricted" else baseline(spec)


def check(pod: dict[str, Any], level: str) -> None:
    """Raise Kubernetes' 403 if ``pod`` violates ``level``."""
    found = violations(pod, level)
    if found:
        name = ((pod.get("metadata") or {}).get("name")) or ""
        what = f'pods "{name}"' if name else "pods"
        raise Forbidden(f'{what} is forbidden: violates PodSecurity "{level}:latest": {", ".join(found)}', details={"name": name, "kind": "pods"} if name else {"kind": "pods"})
