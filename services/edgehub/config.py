from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from edgebus import topology
from edgebus.runtime import ServiceSettings


class EdgeHubSettings(BaseModel):
    identity_dir: str | None = Field(None, description="The node's identity (edgebus node join): its link certificate is renewed from here.")
    system_nkey_file: str | None = Field(None, description="nkey of the node server's system user (to reload it after a renewal).")
    heartbeat_interval: float = Field(10.0, description="Seconds between node heartbeats.")
    status_interval: float = Field(60.0, description="Seconds between looks at the node's status facts (sent when they changed).")
    status_report_interval: float = Field(
        300.0, description="Seconds after which the node status is sent again although nothing changed (Kubernetes' nodeStatusReportFrequency: 5 min)."
    )
    link_check_interval: float = Field(1.0, gt=0, description="Seconds between cloud-link checks while the link is down or changing.")
    link_idle_check_interval: float = Field(
        30.0,
        gt=0,
        description="Seconds between checks of a link that is up, when the node's server tells edgehub of its leaf connections "
        "opening and closing (system-account advisories: a change is checked at once); without them every check is link_check_interval apart.",
    )
    link_probe: Literal["leafz", "jetstream"] = Field(
        "leafz",
        description="How the link is checked: 'leafz' asks the node's own server for its leaf connection (needs system_nkey_file; "
        "nothing crosses the link, the cloud's JetStream is asked once per down->up transition); 'jetstream' asks the cloud's "
        "JetStream API over the link at every check (the only way without a system credential).",
    )
    down_pull_expires: float = Field(
        topology.DOWN_PULL_EXPIRES, gt=0, description="Seconds a pull for the node's desired state waits on the cloud before it is renewed (an update is delivered at once, whatever this is)."
    )
    forward_timeout: float = Field(3.0, description="Seconds to wait for the cloud's ack of a forwarded message.")
    backlog_interval: float = Field(5.0, gt=0, description="Seconds between checks of the outbox backlog; a change (and the first check after the link comes up) is reported to the cloud.")
    internal_ip: str = Field("", description="Address reported as the node's InternalIP (default: resolved hostname).")
    resolve_timeout: float = Field(2.0, gt=0, description="Seconds to wait for the hostname's address (resolved off the event loop; the last one is kept).")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels for the Node object on join.")
    outbox_max_age: float = Field(topology.OUTBOX_MAX_AGE, gt=0, description="Seconds the outbox keeps a message not yet forwarded (older ones are dropped, and counted).")
    outbox_max_bytes: int = Field(topology.OUTBOX_MAX_BYTES, gt=0, description="Bytes the outbox may hold while the link is down (the oldest messages are dropped beyond, and counted).")


class Settings(ServiceSettings):
    edgehub: EdgeHubSettings = EdgeHubSettings()
