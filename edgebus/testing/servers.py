"""Start real nats-servers (a cloud hub and edge leaves) for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgebus import names
from edgebus.natsd import HubConfig, LeafConfig, NatsServer, free_port
from edgebus.testing.proxy import TcpProxy


@dataclass
class Hub:
    server: NatsServer
    leaf_port: int

    @property
    def url(self) -> str:
        return self.server.url

    def restart(self) -> None:
        self.server.stop()
        self.server.start(die_with_parent=True)
        self.server.wait_ready()


@dataclass
class Leaf:
    node: str
    server: NatsServer
    proxy: TcpProxy | None = None
    mqtt_port: int | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def domain(self) -> str:
        return names.node_domain(self.node)


@dataclass
class Cluster:
    root: Path
    hub: Hub
    leaves: dict[str, Leaf] = field(default_factory=dict)

    def stop(self) -> None:
        for leaf in self.leaves.values():
            leaf.server.stop()
            if leaf.proxy is not None:
                leaf.proxy.close()
        self.hub.server.stop()


def start_hub(root: Path) -> Hub:
    port, leaf_port = free_port(), free_port()
    srv = NatsServer(HubConfig(store_dir=str(root / "cloud" / "js"), port=port, leaf_port=leaf_port), root / "cloud")
    srv.start(die_with_parent=True)
    srv.wait_ready()
    return Hub(srv, leaf_port)


def start_leaf(root: Path, hub: Hub, node: str, *, via_proxy: bool = False, mqtt: bool = False, upstream_leaf_port: int | None = None, leaf_port: int | None = None) -> Leaf:
    """An edge node's leaf server dialing the hub (or ``upstream_leaf_port``: a site server);
    with ``leaf_port`` it is itself a site server that accepts the site's nodes."""
    proxy = None
    target = upstream_leaf_port or hub.leaf_port
    if via_proxy:
        proxy = TcpProxy("127.0.0.1", hub.leaf_port)
        proxy.start()
        target = proxy.port
    mqtt_port = free_port() if mqtt else None
    cfg = LeafConfig(
        name=node,
        domain=names.node_domain(node),
        store_dir=str(root / node / "js"),
        port=free_port(),
        hub_urls=[f"nats-leaf://127.0.0.1:{target}"],
        mqtt_port=mqtt_port,
        leaf_port=leaf_port,
    )
    srv = NatsServer(cfg, root / node)
    srv.start(die_with_parent=True)
    srv.wait_ready()
    return Leaf(node, srv, proxy, mqtt_port)
