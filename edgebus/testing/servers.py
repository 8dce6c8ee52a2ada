"""Start real nats-servers (a cloud hub and edge leaves) for tests and benchmarks, secured
as in production: the hub trusts a NATS operator made for the test (every user JWT is
verified by the server), TLS on its ports with a client certificate required on the leafnode
port; each leaf has a node identity issued by the test's cloud PKI (its link credential and
certificate) and its own users (nkeys for services, passwords for mappers).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

from edgebus import names
from edgebus.bus import Bus, BusAuth
from edgebus.identity import pki
from edgebus.identity.cloud import CloudPki
from edgebus.identity.node import NodeIdentity
from edgebus.natsd import CLUSTER_RESOLVER_SYNC, HubConfig, LeafConfig, NatsServer, free_port
from edgebus.testing.proxy import TcpProxy

HOSTS = ["127.0.0.1", "localhost"]


@dataclass
class Hub:
    server: NatsServer
    leaf_port: int
    pki: CloudPki

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, user: str = "admin") -> BusAuth:
        """Credentials of a cloud user (a service name or ``admin``: the whole account)."""
        if not self.pki.creds_file(user).exists():
            self.pki.issue_user_creds(user)
        return BusAuth(creds_file=str(self.pki.creds_file(user)), ca_file=str(self.pki.ca_file))

    def nats_settings(self, user: str = "admin") -> dict[str, Any]:
        """The ``nats`` settings group of a cloud service connecting as ``user``."""
        a = self.auth(user)
        return {"url": self.url, "creds_file": a.creds_file, "ca_file": a.ca_file}

    def bus(self, name: str = "test", *, user: str = "admin", request_timeout: float = 5.0) -> Bus:
        return Bus(self.url, name=name, request_timeout=request_timeout, auth=self.auth(user))

    def cli_env(self) -> dict[str, str]:
        """Environment for the ``edgebus`` CLI to reach this hub as an admin."""
        a = self.auth("admin")
        return {"EDGEBUS_NATS_CREDS": str(a.creds_file), "EDGEBUS_CA_FILE": str(a.ca_file)}

    @property
    def system_creds(self) -> str:
        return str(self.pki.sys_creds_file)

    def restart(self) -> None:
        self.server.stop()
        self.server.start(die_with_parent=True)
        self.server.wait_ready()


@dataclass
class Leaf:
    node: str
    server: NatsServer
    identity: NodeIdentity
    proxy: TcpProxy | None = None
    mqtt_port: int | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def domain(self) -> str:
        return names.node_domain(self.node)

    def auth(self, user: str = "edgebus") -> BusAuth:
        """A local user of the node's server (a service name, ``edgebus``, ``system``)."""
        return BusAuth(nkey_file=str(self.identity.local_nkey_file(user)), inbox_prefix=names.inbox_prefix(self.node))

    def nats_settings(self, user: str = "edgebus") -> dict[str, Any]:
        return {"url": self.url, "nkey_file": str(self.identity.local_nkey_file(user))}

    def bus(self, name: str = "test", *, user: str = "edgebus", request_timeout: float = 5.0) -> Bus:
        return Bus(self.url, name=name, request_timeout=request_timeout, auth=self.auth(user), node=self.node)

    def mapper(self, name: str = "modbus") -> Any:
        return self.identity.mapper(name)


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


def cloud_pki(root: Path) -> CloudPki:
    return CloudPki.ensure(root / "cloud" / "pki", hosts=HOSTS)


def start_hub(root: Path, *, client_tls: bool = True) -> Hub:
    p = cloud_pki(root)
    auth = p.hub_auth(str(root / "cloud" / "resolver"), client_tls=client_tls)
    srv = _started(lambda: HubConfig(store_dir=str(root / "cloud" / "js"), port=free_port(), leaf_port=free_port(), auth=auth), root / "cloud")
    assert isinstance(srv.config, HubConfig)
    return Hub(srv, srv.config.leaf_port, p)


def _started(config: Callable[[], Any], workdir: Path) -> NatsServer:
    """A started nats-server. ``free_port`` only finds a port that was free: when another
    process took one before the server bound it, the server is started again on fresh
    ports (``config`` picks them), up to three times."""
    for attempt in range(3):
        srv = NatsServer(config(), workdir)
        mark = srv.log_path.stat().st_size if srv.log_path.exists() else 0
        srv.start(die_with_parent=True)
        try:
            srv.wait_ready()
            return srv
        except RuntimeError:
            with open(srv.log_path, "rb") as f:
                f.seek(mark)
                taken = b"address already in use" in f.read()
            srv.stop()
            if not taken or attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass
class HubCluster(Hub):
    """The cloud as a NATS cluster (JetStream R3): ``server`` is the first of ``servers``,
    each with its own client and leafnode port, store and full resolver; clients are given
    every server's URL and fail over."""

    servers: list[NatsServer] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def leaf_ports(self) -> list[int]:
        return [s.config.leaf_port for s in self.servers if isinstance(s.config, HubConfig)]

    def nats_settings(self, user: str = "admin") -> dict[str, Any]:
        return {**super().nats_settings(user), "url": ",".join(self.urls), "replicas": len(self.servers)}

    def bus(self, name: str = "test", *, user: str = "admin", request_timeout: float = 5.0, server: int | None = None) -> Bus:
        """A connection to every server (or only to ``server``, no failover), creating R3."""
        urls = self.urls if server is None else [self.servers[server].url]
        return Bus(urls, name=name, request_timeout=request_timeout, auth=self.auth(user), replicas=len(self.servers))

    def kill(self, k: int) -> None:
        """SIGKILL server ``k`` (no shutdown: what a crashed machine does)."""
        self.servers[k].kill()

    def start(self, k: int) -> None:
        self.servers[k].start(die_with_parent=True)
        self.servers[k].wait_ready()

    def restart(self) -> None:
        for k in range(len(self.servers)):
            self.servers[k].stop()
            self.start(k)

    def stop(self) -> None:
        for srv in self.servers:
            srv.stop()


def start_hub_cluster(root: Path, *, size: int = 3) -> HubCluster:
    """``size`` hub servers in a cluster (routes with TLS, operator mode, full resolvers)."""
    p = cloud_pki(root)
    ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
    servers = []
    for k, (port, leaf, route) in enumerate(ports):
        d = root / "cloud" / f"nats-{k + 1}"
        peers = [f"nats-route://127.0.0.1:{r}" for j, (_, _, r) in enumerate(ports) if j != k]
        auth = p.hub_auth(str(d / "resolver"))
        auth.sync_interval = CLUSTER_RESOLVER_SYNC
        cfg = HubConfig(store_dir=str(d / "js"), port=port, leaf_port=leaf, name=f"cloud-{k + 1}", cluster_name="edgebus", cluster_port=route, routes=peers, auth=auth)
        servers.append(NatsServer(cfg, d))
    for srv in servers:
        srv.start(die_with_parent=True)
    for srv in servers:
        srv.wait_ready()
    return HubCluster(servers[0], ports[0][1], p, servers)


def issue_identity(p: CloudPki, node: str, ident: NodeIdentity, *, lifetime: dt.timedelta = dt.timedelta(days=30), leaf_urls: list[str] | None = None) -> None:
    """Give ``node`` a credential and link certificate straight from the cloud's PKI (what a
    join through cloudhub does, minus its token check and record)."""
    key = ident.identity_key()
    link = pki.new_key()
    cert = p.link_cert(node, pki.new_csr(link, node), lifetime)
    answer = {
        "node": node,
        "jwt": p.node_jwt(node, key.public),
        "certificate": cert.decode(),
        "ca": p.ca_bundle().decode(),
        "cloudDomain": names.CLOUD_DOMAIN,
        "leafUrls": leaf_urls or [],
    }
    ident.save_join(answer, pki.key_pem(link))


def start_leaf(
    root: Path,
    hub: Hub,
    node: str,
    *,
    via_proxy: bool = False,
    mqtt: bool = False,
    upstream_leaf_port: int | None = None,
    leaf_port: int | None = None,
    identity: NodeIdentity | None = None,
    ping_interval: str | None = None,
) -> Leaf:
    """An edge node's leaf server dialing the hub (or ``upstream_leaf_port``: a site server);
    with ``leaf_port`` it is itself a site server that accepts the site's nodes. Without
    ``identity`` the node is given one from the hub's PKI; without ``ping_interval``, the
    server's default (how soon a silent link is noticed)."""
    proxy = None
    target = upstream_leaf_port or hub.leaf_port
    if via_proxy:
        proxy = TcpProxy("127.0.0.1", hub.leaf_port)
        proxy.start()
        target = proxy.port
    ident = identity or NodeIdentity(root / node / "identity")
    if not ident.joined:
        issue_identity(hub.pki, node, ident)
    auth = ident.leaf_auth(node)
    srv = _started(
        lambda: LeafConfig(
            name=node,
            domain=names.node_domain(node),
            store_dir=str(root / node / "js"),
            port=free_port(),
            hub_urls=[f"nats-leaf://127.0.0.1:{target}"],
            mqtt_port=free_port() if mqtt else None,
            leaf_port=leaf_port,
            auth=auth,
            ping_interval=ping_interval or LeafConfig.ping_interval,
        ),
        root / node,
    )
    return Leaf(node, srv, ident, proxy, srv.config.mqtt_port)


def cloudhub_identity(hub: Hub, **cloudhub: Any) -> dict[str, Any]:
    """cloudhub's settings group with the hub's PKI (joins, renewals, revocation pushes)."""
    return {"pki_dir": str(hub.pki.dir), "system_creds_file": hub.system_creds, **cloudhub}


async def register_node(store: Any, node: str, labels: dict[str, str] | None = None) -> None:
    """The Node object a join creates (for tests whose nodes got their identity directly)."""
    from edgebus.errors import AlreadyExists
    from edgebus.objects import NODES

    lbl = {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", "node-role.kubernetes.io/edge": "", **(labels or {})}
    try:
        await store.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": lbl}, "spec": {}, "status": {"conditions": []}})
    except AlreadyExists:
        pass


def bus_for(settings: Any, name: str, *, request_timeout: float = 5.0) -> Bus:
    """A connection with the same server and credentials as a service built from ``settings``."""
    return Bus(settings.nats.servers(), name=name, request_timeout=request_timeout, auth=settings.nats.auth(), node=settings.node)


def mapper_settings(leaf: Leaf, service: str) -> dict[str, Any]:
    """Settings of a mapper service (``mappers.modbus``...) on ``leaf``, with its own
    restricted credential."""
    cred = leaf.identity.mapper(service.rsplit(".", 1)[-1])
    return {"node": leaf.node, "nats": {"url": leaf.url, "nkey_file": str(cred.nkey_file), "inbox_prefix": names.mapper_inbox_prefix(leaf.node), "ping_interval": 1}}


def start_site(root: Path, hub: Hub, site: str, members: list[str], *, leaf_port: int, via_proxy: bool = True) -> Leaf:
    """A site server for ``members`` (edge federation): it dials the hub (through a cuttable
    proxy) with a site credential and verifies its member nodes' own credentials on its
    leafnode port."""
    from edgebus.natsd import ServerTls, SiteAuth

    proxy = None
    target = hub.leaf_port
    if via_proxy:
        proxy = TcpProxy("127.0.0.1", hub.leaf_port)
        proxy.start()
        target = proxy.port
    ident = NodeIdentity(root / site / "identity")
    key = ident.identity_key()
    link = pki.new_key()
    ident.save_join({"node": site, "jwt": hub.pki.site_jwt(site, key.public, members), "certificate": hub.pki.link_cert(site, pki.new_csr(link, site), dt.timedelta(days=30)).decode(), "ca": hub.pki.ca_bundle().decode()}, pki.key_pem(link))
    server_key = pki.new_key()
    server_cert = hub.pki.ca().issue(server_key.public_key(), f"site:{site}", server=True, client=True, hosts=HOSTS)
    pki.write_private(ident.dir / "server.key", pki.key_pem(server_key))
    pki.write_public(ident.dir / "server.crt", pki.cert_pem(server_cert))
    sa = hub.pki.site_auth("")
    auth = SiteAuth(
        operator_jwt=sa["operator_jwt"],
        system_account=sa["system_account"],
        account=sa["account"],
        preload=sa["preload"],
        tls=ServerTls(str(ident.dir / "server.crt"), str(ident.dir / "server.key"), str(ident.ca_file)),
        creds_file=str(ident.creds_file),
        ca_file=str(ident.ca_file),
        cert_file=str(ident.link_cert_file),
        key_file=str(ident.link_key_file),
    )
    srv = _started(
        lambda: LeafConfig(
            name=site,
            domain=names.node_domain(site),
            store_dir=str(root / site / "js"),
            port=free_port(),
            hub_urls=[f"nats-leaf://127.0.0.1:{target}"],
            leaf_port=leaf_port,
            auth=auth,
        ),
        root / site,
    )
    return Leaf(site, srv, ident, proxy, None)
