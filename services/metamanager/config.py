from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class MetaManagerSettings(BaseModel):
    data_dir: str = Field("./data/metamanager", description="LMDB environment directory.")
    map_size_mb: int = Field(64, description="Initial LMDB map size; it grows when full.")
    max_map_size_mb: int = Field(16384, description="The map never grows past this.")
    batch: int = Field(256, description="Downstream messages committed per LMDB transaction (at most).")
    ack_wait: float = Field(5.0, description="Seconds before an unacknowledged downstream message is redelivered.")
    metaserver_host: str = Field("127.0.0.1", description="Address of the metaserver (kubectl-compatible local API).")
    metaserver_port: int = Field(10550, description="Port of the metaserver; 0 disables it.")


class Settings(ServiceSettings):
    metamanager: MetaManagerSettings = MetaManagerSettings()
