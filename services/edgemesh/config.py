from __future__ import annotations

from pydantic import BaseModel, Field

from edgebus.runtime import ServiceSettings


class EdgeMeshSettings(BaseModel):
    """Service discovery and traffic between edge workloads."""

    dns_host: str = Field("127.0.0.1", description="Address the DNS server listens on (UDP and TCP).")
    dns_port: int = Field(53, description="DNS port (UDP and TCP); 0 disables the DNS server.")
    upstream: str = Field("", description="Upstream resolver(s) for non-cluster names, 'ip[:port]', comma-separated; empty: the first nameserver of /etc/resolv.conf.")
    upstream_timeout: float = Field(2.0, description="Seconds to wait for the upstream resolver.")
    cluster_domain: str = Field("cluster.local", description="Cluster DNS domain: <svc>.<ns>.svc.<domain>.")
    default_namespace: str = Field("default", description="Namespace of a bare service name (``web``).")
    dns_ttl: int = Field(5, description="TTL of the A records of services, seconds.")
    service_cidr: str = Field("127.40.0.0/16", description="Loopback range the node's service addresses come from (one address per Service).")
    connect_timeout: float = Field(3.0, description="Seconds to connect to an endpoint (locally, or through a tunnel).")
    max_attempts: int = Field(3, description="Endpoints tried per connection before giving up.")
    window: int = Field(1024 * 1024, description="Tunnel flow-control window per direction, bytes in flight unacknowledged.")
    chunk: int = Field(64 * 1024, description="Largest tunnel data frame, bytes.")
    keepalive: float = Field(5.0, description="A tunnel side that sent nothing for this long sends a keepalive.")
    idle_timeout: float = Field(15.0, description="A tunnel whose peer sent nothing (not even keepalives) for this long is reset.")
    max_tunnels: int = Field(1024, description="Open tunnels per node (each direction buffers at most `window`).")
    resync_interval: float = Field(10.0, description="Re-read Services, Endpoints and pods from metamanager at least this often.")


class Settings(ServiceSettings):
    edgemesh: EdgeMeshSettings = EdgeMeshSettings()
