from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.auth import AuthSettings
from edgebus.runtime import ServiceSettings


class MetaManagerSettings(BaseModel):
    data_dir: str = Field("./data/metamanager", description="LMDB environment directory.")
    map_size_mb: int = Field(64, description="Initial LMDB map size; it grows when full.")
    max_map_size_mb: int = Field(16384, description="The map never grows past this.")
    batch: int = Field(256, description="Downstream messages committed per LMDB transaction (at most).")
    ack_wait: float = Field(5.0, description="Seconds before an unacknowledged downstream message is redelivered.")
    metaserver_host: str = Field("127.0.0.1", description="Address of the metaserver (kubectl-compatible local API).")
    metaserver_port: int = Field(10550, description="Port of the metaserver; 0 disables it.")
    admin_token_file: str = Field(
        "", description="The node's local admin token (created 0600 when missing; in the node's data dir). Set: the metaserver authenticates every request."
    )
    auth: AuthSettings = Field(
        default_factory=AuthSettings, description="The cluster's token verification keys, for ServiceAccount tokens checked offline (auth.token_keys)."
    )
    metaserver_tls_cert_file: str = Field("", description="PEM certificate of the metaserver's HTTPS listener; empty: plain HTTP.")
    metaserver_tls_key_file: str = Field("", description="PEM private key of the metaserver's HTTPS listener.")


class Settings(ServiceSettings):
    metamanager: MetaManagerSettings = MetaManagerSettings()
