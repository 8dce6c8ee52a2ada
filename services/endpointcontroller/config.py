from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class EndpointControllerSettings(BaseModel):
    kv_replicas: int = Field(1, description="Replicas of the objects KV bucket (3 in a NATS cluster).")
    lease_ttl: float = Field(6.0, ge=1.0, le=60.0, description="Seconds a standby replica waits for a dead leader's lease to expire (a leader that cannot renew stops after half of it).")


class Settings(ServiceSettings):
    endpointcontroller: EndpointControllerSettings = EndpointControllerSettings()
