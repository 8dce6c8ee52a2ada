from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class DeviceControllerSettings(BaseModel):
    stream_replicas: int = Field(1, description="Replicas of the cloud streams (3 in a NATS cluster).")
    kv_replicas: int = Field(1, description="Replicas of the objects KV bucket.")
    batch: int = Field(200, description="Upstream messages fetched (and coalesced per device) at once.")
    ack_wait: float = Field(10.0, description="Seconds before an unacknowledged upstream message is redelivered.")


class Settings(ServiceSettings):
    devicecontroller: DeviceControllerSettings = DeviceControllerSettings()
