"""Settings of the apiserver: the common service settings plus the ``apiserver`` group.

Environment: ``EDGEBUS_APISERVER__HOST``, ``EDGEBUS_APISERVER__PORT``,
``EDGEBUS_APISERVER__KV_REPLICAS`` (and the common ``EDGEBUS_NATS__URL`` etc.).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class ApiServerSettings(BaseModel):
    """The REST API endpoint and the object bucket."""

    host: str = Field("127.0.0.1", description="Address the REST API listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port of the REST API.")
    kv_replicas: int = Field(1, ge=1, le=5, description="Replicas of the object KV bucket when it is created (3 on a NATS cluster).")
    tls_cert_file: str | None = Field(None, description="Serve HTTPS with this certificate (None: plain HTTP).")
    tls_key_file: str | None = Field(None, description="Key of ``tls_cert_file``.")
    ca_file: str | None = Field(None, description="The cluster's CA bundle, served at /edgebus/v1/ca to nodes that join.")


class Settings(ServiceSettings):
    apiserver: ApiServerSettings = ApiServerSettings()
