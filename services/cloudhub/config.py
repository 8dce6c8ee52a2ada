from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from edgebus import topology
from edgebus.runtime import ServiceSettings


class CloudHubSettings(BaseModel):
    pki_dir: str | None = Field(None, description="The cloud's trust material (CA, NATS operator and account keys); None: joins are refused.")
    system_creds_file: str | None = Field(None, description="System-account credentials cloudhub pushes account updates (revocations) with.")
    link_lifetime: float = Field(30 * 86400.0, gt=10, description="Seconds a node's link certificate is valid; nodes renew it at two thirds.")
    renew_window: float = Field(365 * 86400.0, ge=0, description="Seconds after its link certificate expired that an offline node may still renew it with its identity key (0: always).")
    leaf_urls: list[str] = Field(default_factory=list, description="The hub's leafnode URLs handed to joining nodes (e.g. nats-leaf://cloud.example:7422).")
    apiserver_url: str = Field("", description="The apiserver's URL handed to joining nodes (for renewals after an expiry).")
    auto_register_nodes: bool = Field(False, description="Create the Node of an unknown node on its first heartbeat (only for clouds without identity: anyone could register).")
    node_grace_period: float = Field(40.0, description="Seconds without a heartbeat before a node is NotReady.")
    lifecycle_interval: float = Field(1.0, description="Longest sleep of the node lifecycle between deadlines (it also checks then that it ran and that NATS answers).")
    probe_timeout: float = Field(2.0, description="A NATS ping slower than this means heartbeats may be missing: every node gets a fresh grace period.")
    lease_ttl: float = Field(6.0, description="Seconds a standby replica waits for a dead lifecycle holder's lease to expire.")
    stream_replicas: int = Field(1, description="Replicas of the cloud streams (3 in a NATS cluster).")
    kv_replicas: int = Field(1, description="Replicas of the objects KV bucket.")
    up_max_age: float = Field(
        topology.UP_MAX_AGE, gt=0, description="Seconds EDGEBUS_UP keeps what nodes forwarded: how long its consumers (cloudhub, devicecontroller) may be down."
    )
    up_duplicate_window: float = Field(
        topology.UP_DUPLICATE_WINDOW, gt=0, description="Seconds forwarded messages are de-duplicated by Nats-Msg-Id (at most up_max_age)."
    )

    @model_validator(mode="after")
    def _windows(self) -> CloudHubSettings:
        if self.up_duplicate_window > self.up_max_age:
            raise ValueError(f"up_duplicate_window ({self.up_duplicate_window}s) may not exceed up_max_age ({self.up_max_age}s)")
        return self


class Settings(ServiceSettings):
    cloudhub: CloudHubSettings = CloudHubSettings()
