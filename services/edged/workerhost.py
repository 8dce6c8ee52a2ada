"""What a pod worker (:mod:`services.edged.pods`) may use of the node it runs on.

The worker is typed against :class:`WorkerHost`, not against the pod manager: this is the
whole of what it touches. :class:`services.edged.manager.PodManager` is the one host; mypy
checks that it satisfies the protocol where it creates its workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from edgebus.objects.poddns import ResolvConf
    from services.edged import spec as S
    from services.edged.images import Images
    from services.edged.runtime import Observed
    from services.edged.runtimes import Runtimes


class WorkerSettings(Protocol):
    """The part of :class:`services.edged.config.EdgedSettings` a worker reads."""

    @property
    def data_dir(self) -> str:
        """Where the pods' directories (volumes, logs) are."""

    @property
    def default_grace_period(self) -> int:
        """terminationGracePeriodSeconds of a pod that does not say."""

    @property
    def backoff_initial(self) -> float:
        """Crash back-off: delay before the 2nd restart."""

    @property
    def backoff_max(self) -> float:
        """Crash back-off cap."""

    @property
    def backoff_reset(self) -> float:
        """A container that ran this long restarts without back-off."""

    def protected_dirs(self) -> tuple[str, ...]:
        """Host directories no hostPath volume may lie in or contain."""


class WorkerHost(Protocol):
    """What a :class:`services.edged.pods.PodWorker` needs from the node's pod manager."""

    @property
    def node(self) -> str:
        """The node's name (labels of what the worker creates, ``spec.nodeName`` in env)."""

    @property
    def host_ip(self) -> str:
        """The node's address: the pod's hostIP and (host network) podIP."""

    @property
    def probe_host(self) -> str:
        """The address HTTP and TCP probes connect to."""

    @property
    def cri(self) -> Runtimes:
        """The container runtimes (containerd, and wasmtime if present), CRI-shaped."""

    @property
    def settings(self) -> WorkerSettings:
        """edged's settings, as far as a worker reads them."""

    def runtime_ready(self, pod: dict[str, Any] | None) -> bool:
        """Whether the runtime of ``pod`` answers (``None``: a pod no longer desired)."""

    def runtime_lost(self, exc: Exception) -> None:
        """A CRI call found the runtime gone: mark it unavailable until it answers again."""

    async def observe(self, uid: str) -> Observed:
        """The sandboxes and containers of pod ``uid`` in the runtime, as they are now."""

    def forget_container(self, container_id: str) -> None:
        """Drop what is cached about a container the worker removed."""

    def sources_for(self, namespace: str) -> S.Sources:
        """The ConfigMaps and Secrets of ``namespace`` (environment and volumes)."""

    def handler_of(self, pod: dict[str, Any] | None) -> str | None:
        """The pod's runtime handler (``"wasm"``), ``None`` for containerd."""

    def pod_dns(self, pod: dict[str, Any]) -> ResolvConf | None:
        """The pod's resolv.conf (``None``: the node's own file)."""

    def images_for(self, pod: dict[str, Any]) -> Images:
        """The image store of the pod's runtime; raises ImageError if the node has none."""

    def pod_event(self, pod: dict[str, Any], type_: str, reason: str, message: str, container: str = "") -> None:
        """Record a Kubernetes Event about ``pod`` (or one of its containers)."""

    async def publish_status(self, ref: S.PodRef, status: dict[str, Any], *, deleted: bool = False) -> bool:
        """Put the pod's status into the outbox (``deleted``: it is gone); False if not stored."""


__all__ = ["WorkerHost", "WorkerSettings"]
