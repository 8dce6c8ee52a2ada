"""Settings of the apiserver: the common service settings plus the ``apiserver`` group.

Environment: ``EDGEBUS_APISERVER__HOST``, ``EDGEBUS_APISERVER__PORT``,
``EDGEBUS_APISERVER__KV_REPLICAS`` (and the common ``EDGEBUS_NATS__URL`` etc.).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from edgebus.auth import AuthSettings
from edgebus.runtime import ServiceSettings


class ApiServerSettings(BaseModel):
    """The REST API endpoint and the object bucket."""

    host: str = Field("127.0.0.1", description="Address the REST API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port of the REST API.")
    kv_replicas: int = Field(1, ge=1, le=5, description="Replicas of the object KV bucket when it is created (3 on a NATS cluster).")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="Bearer token authentication and RBAC (on when auth.token_keys names a key file).")
    signing_key: str = Field("", description="PEM file of the private key TokenRequests (kubectl create token) are signed with; empty: no tokens issued.")
    max_token_seconds: int = Field(86400, ge=600, description="Longest lifetime of an issued ServiceAccount token (longer requests are cut to this).")
    tls_cert_file: str = Field("", description="PEM certificate (chain) of the HTTPS listener; empty: plain HTTP.")
    tls_key_file: str = Field("", description="PEM private key of the HTTPS listener.")
    pod_security_default: Literal["privileged", "baseline", "restricted"] = Field(
        "baseline", description="Pod Security level of namespaces without a pod-security.kubernetes.io/enforce label."
    )
    ca_file: str | None = Field(None, description="The cluster's CA bundle, served at /edgebus/v1/ca to nodes that join.")
    console: bool = Field(True, description="Serve the web console under /console (every console request is made as the signed-in user).")


class Settings(ServiceSettings):
    apiserver: ApiServerSettings = ApiServerSettings()
