"""The container runtime layer: CRI ``runtime.v1`` over gRPC, and a private containerd.

Only this package imports ``grpc`` and the CRI stubs (``cri_api``).
"""

from edgebus.cri.client import (
    CRI_SECONDS,
    CriClient,
    CriError,
    CriNotFound,
    CriTimeout,
    RuntimeUnavailable,
    api,
    remove_all,
)

__all__ = [
    "CRI_SECONDS",
    "CriClient",
    "CriError",
    "CriNotFound",
    "CriTimeout",
    "RuntimeUnavailable",
    "api",
    "remove_all",
]
