"""Settings of edged: the common service settings plus the ``edged`` group.

Environment: ``EDGEBUS_EDGED__CONTAINERD`` (the CRI socket), ``EDGEBUS_EDGED__DATA_DIR``,
``EDGEBUS_EDGED__BACKOFF_INITIAL`` ... (and the common ``EDGEBUS_NODE``,
``EDGEBUS_NATS__URL`` etc.).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class EdgedSettings(BaseModel):
    containerd: str = Field("unix:///run/containerd/containerd.sock", description="CRI endpoint of the container runtime (containerd's socket).")
    data_dir: str = Field("./data/edged", description="Per-pod directories: volumes (configMap, secret, emptyDir) and container logs.")
    internal_ip: str = Field("", description="The node's address, reported as hostIP and as podIP of (host-network) pods; default: resolved hostname.")
    cluster_dns: list[str] = Field(
        default_factory=list, description="Nameservers of ClusterFirst pods' resolv.conf (the node's edgemesh DNS, on port 53); empty: those pods get the node's resolv.conf."
    )
    cluster_domain: str = Field("cluster.local", description="The cluster DNS domain of pods' search path (<ns>.svc.<domain> svc.<domain> <domain>).")
    resolv_conf: str = Field("/etc/resolv.conf", description="The node's resolv.conf: Default pods' DNS, and the search domains appended for ClusterFirst pods.")
    sync_interval: float = Field(1.0, gt=0, description="Seconds between relists of the runtime while the node has pods (exit detection, probes' effects, back-off timers).")
    idle_sync_interval: float = Field(
        30.0, gt=0, description="Seconds between relists while the node has no pod at all (a sweep for orphans; a new pod starts the fast relist at once)."
    )
    runtime_check_interval: float = Field(
        30.0, gt=0, description="Seconds between version checks of a runtime that answers (its connection closing is noticed at once, without a check)."
    )

    resync_interval: float = Field(30.0, gt=0, description="Seconds between full re-reads of the desired pods from metamanager.")
    source_refresh_delay: float = Field(
        0.2, ge=0, description="After a ConfigMap or Secret a running pod uses changes, wait this long before refreshing its volumes, so a burst of changes costs one pass."
    )
    backoff_initial: float = Field(10.0, ge=0, description="Crash back-off: delay before the 2nd restart; doubles for each further one.")
    backoff_max: float = Field(300.0, ge=0, description="Crash back-off cap (seconds).")
    backoff_reset: float = Field(600.0, gt=0, description="A container that ran this long restarts without back-off.")
    image_backoff_initial: float = Field(10.0, ge=0, description="Image pull back-off: first delay after a failed pull; doubles up to backoff_max.")
    pull_timeout: float = Field(300.0, gt=0, description="Seconds an image pull may take.")
    cri_timeout: float = Field(10.0, gt=0, description="Default timeout of a CRI call.")
    default_grace_period: int = Field(30, ge=0, description="terminationGracePeriodSeconds when the pod does not say.")
    max_pods: int = Field(110, ge=1, description="Reported pod capacity of the node.")
    status_interval: float = Field(60.0, gt=0, description="Seconds between node status reports (also sent on every runtime state change).")
    metrics_interval: float = Field(15.0, gt=0, description="Seconds between resource usage reports (kubectl top): CPU is a rate over this window.")
    preload_images: list[str] = Field(default_factory=list, description="Image archives (OCI/Docker tar) imported at start when their image is missing.")
    log_follow_max_seconds: float = Field(3600.0, gt=0, description="A followed log stream ends after this long.")
    max_log_followers: int = Field(32, ge=1, description="Concurrent followed log streams.")
    max_log_bytes: int = Field(4 << 20, ge=1024, description="Largest log reply (the tail is kept).")
    max_image_bytes: int = Field(
        4 << 30, ge=1 << 20, description="Largest image archive image load accepts (the stored size is checked, and the bytes are counted as they arrive)."
    )
    node_data_dir: str = Field(
        "", description="The node's data directory (its credentials live there): a hostPath volume inside it, or containing it, is refused. Default: the parent of data_dir."
    )
    protected_paths: list[str] = Field(default_factory=list, description="More host directories no hostPath volume may lie in or contain.")
    wasm_enabled: bool = Field(True, description="Run Wasm pods (wasmtime, one worker process per container) when the wasmtime package is installed.")
    wasm_runtime_classes: list[str] = Field(
        default_factory=lambda: ["wasm"], description="runtimeClassName values whose pods run as WebAssembly (the RuntimeClasses with handler wasm)."
    )
    wasm_cpu_burst_seconds: float = Field(
        10.0, gt=0, description="A Wasm container may use more CPU than its limit for this long (at the limit's rate) before it is stopped (CPULimitExceeded)."
    )

    def protected_dirs(self) -> tuple[str, ...]:
        node_dir = self.node_data_dir or str(Path(self.data_dir).resolve().parent)
        return (node_dir, *self.protected_paths)


class Settings(ServiceSettings):
    edged: EdgedSettings = EdgedSettings()
