from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class EdgeHubSettings(BaseModel):
    identity_dir: str | None = Field(None, description="The node's identity (edgebus node join): its link certificate is renewed from here.")
    system_nkey_file: str | None = Field(None, description="nkey of the node server's system user (to reload it after a renewal).")
    heartbeat_interval: float = Field(10.0, description="Seconds between node heartbeats.")
    status_interval: float = Field(60.0, description="Seconds between full node status reports.")
    link_check_interval: float = Field(1.0, description="Seconds between cloud-link probes.")
    forward_timeout: float = Field(3.0, description="Seconds to wait for the cloud's ack of a forwarded message.")
    internal_ip: str = Field("", description="Address reported as the node's InternalIP (default: resolved hostname).")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels for the Node object on join.")


class Settings(ServiceSettings):
    edgehub: EdgeHubSettings = EdgeHubSettings()
