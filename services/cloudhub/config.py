from __future__ import annotations

from pydantic import BaseModel, Field

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
    lifecycle_interval: float = Field(1.0, description="Seconds between node readiness evaluations.")
    stream_replicas: int = Field(1, description="Replicas of the cloud streams (3 in a NATS cluster).")
    kv_replicas: int = Field(1, description="Replicas of the objects KV bucket.")


class Settings(ServiceSettings):
    cloudhub: CloudHubSettings = CloudHubSettings()
