from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class CloudHubSettings(BaseModel):
    bootstrap_tokens: list[str] = Field(default_factory=list, description="Tokens accepted from joining nodes (empty: any).")
    node_grace_period: float = Field(40.0, description="Seconds without a heartbeat before a node is NotReady.")
    lifecycle_interval: float = Field(1.0, description="Seconds between node readiness evaluations.")
    stream_replicas: int = Field(1, description="Replicas of the cloud streams (3 in a NATS cluster).")
    kv_replicas: int = Field(1, description="Replicas of the objects KV bucket.")


class Settings(ServiceSettings):
    cloudhub: CloudHubSettings = CloudHubSettings()
