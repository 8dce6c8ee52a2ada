"""A node's identity on disk: what it joined with, and the credentials of its own server's users.

``<node data dir>/identity/`` (mode 0700, secrets 0600)::

    node.nk               the node's identity key (made on the node at join; never leaves it)
    node.jwt node.creds   its NATS credential for the leaf link (node.creds = jwt + seed)
    link.key link.crt     its TLS link certificate (short-lived, renewed while online)
    ca.crt                the cloud's CA bundle it trusts
    node.json             node name, the cloud's addresses, lifetimes, when it joined
    local/<user>.nk       nkeys of the node's own services on its server
    local/<mapper>.json   mapper credentials: MQTT user name and password, and an nkey

A node without ``node.creds`` has not joined: its server runs without a leaf link (the node
works locally, and joining adds the link).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from edgebus.identity import natsjwt, pki, roles
from edgebus.identity.natsjwt import Key
from edgebus.natsd import LeafAuth, LocalUser

#: local users of every node's server with the whole local account
SERVICE_USERS = ("edgehub", "metamanager", "edged", "devicetwin", "edgemesh", "edgebus")
#: built-in mappers (their own, restricted credentials)
MAPPERS = ("modbus", "opcua")


class NotJoined(RuntimeError):
    """The node has no credential yet (``edgebus node join`` first)."""


@dataclass
class MapperCredential:
    name: str
    user: str
    password: str
    nkey_file: Path


@dataclass
class NodeIdentity:
    dir: Path

    @classmethod
    def at(cls, node_data_dir: str | Path) -> NodeIdentity:
        return cls(Path(node_data_dir) / "identity")

    # -- paths --------------------------------------------------------------------------
    @property
    def nkey_file(self) -> Path:
        return self.dir / "node.nk"

    @property
    def creds_file(self) -> Path:
        return self.dir / "node.creds"

    @property
    def link_key_file(self) -> Path:
        return self.dir / "link.key"

    @property
    def link_cert_file(self) -> Path:
        return self.dir / "link.crt"

    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def info_file(self) -> Path:
        return self.dir / "node.json"

    def local_nkey_file(self, user: str) -> Path:
        return self.dir / "local" / f"{user}.nk"

    @property
    def token_keys_file(self) -> Path:
        """The cloud's token verification keys (the metaserver checks tokens with them, offline)."""
        return self.dir / "token-keys.pem"

    @property
    def admin_token_file(self) -> Path:
        """The node's local admin token for its metaserver."""
        return self.dir / "local" / "admin.token"

    @property
    def metaserver_ca_file(self) -> Path:
        return self.dir / "local" / "metaserver-ca.crt"

    @property
    def metaserver_cert_file(self) -> Path:
        return self.dir / "local" / "metaserver.crt"

    @property
    def metaserver_key_file(self) -> Path:
        return self.dir / "local" / "metaserver.key"

    @property
    def joined(self) -> bool:
        return self.creds_file.exists() and self.info_file.exists() and self.link_cert_file.exists()

    @property
    def info(self) -> dict[str, Any]:
        if not self.info_file.exists():
            raise NotJoined(f"no node identity in {self.dir}: run `edgebus node join` first")
        return dict(json.loads(self.info_file.read_text()))

    def identity_key(self) -> Key:
        """The node's nkey, made now if it has none yet."""
        if not self.nkey_file.exists():
            pki.write_private(self.nkey_file, Key.new(natsjwt.PREFIX_USER).seed)
        return Key.from_seed(self.nkey_file.read_text())

    def link_not_after(self) -> dt.datetime | None:
        if not self.link_cert_file.exists():
            return None
        return pki.not_after(pki.load_certs(self.link_cert_file.read_bytes())[0])

    # -- writing what the cloud issued --------------------------------------------------
    def save_join(self, answer: dict[str, Any], link_key_pem: bytes) -> None:
        """Store a join (or renewal) answer: credential, link certificate, CA bundle, facts."""
        key = self.identity_key()
        if answer.get("jwt"):
            pki.write_private(self.dir / "node.jwt", answer["jwt"])
            pki.write_private(self.creds_file, natsjwt.creds(answer["jwt"], key))
        self.save_link(answer["certificate"].encode(), link_key_pem, answer.get("ca", "").encode())
        if answer.get("tokenKeys"):
            pki.write_public(self.token_keys_file, "".join(answer["tokenKeys"]))
        facts = {k: answer[k] for k in ("node", "cloudDomain", "leafUrls", "apiserver", "linkLifetimeSeconds", "renewWindowSeconds") if k in answer}
        old = json.loads(self.info_file.read_text()) if self.info_file.exists() else {}
        facts.setdefault("joinedAt", old.get("joinedAt") or dt.datetime.now(dt.UTC).isoformat())
        pki.write_public(self.info_file, json.dumps({**old, **facts}, indent=2) + "\n")

    def save_link(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes = b"") -> None:
        # key first: a certificate is only usable with it, and the server reads both on reload
        pki.write_private(self.link_key_file, key_pem)
        pki.write_public(self.link_cert_file, cert_pem)
        if ca_pem:
            pki.write_public(self.ca_file, ca_pem)

    # -- the node's own server -------------------------------------------------------------
    def ensure_local(self, mappers: tuple[str, ...] = MAPPERS, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        """The node's local credentials (made once): its services' nkeys, its mappers', and
        the metaserver's serving certificate (from a CA of the node's own: the metaserver is a
        local endpoint, and works before the node ever joined)."""
        for u in (*SERVICE_USERS, "system"):
            f = self.local_nkey_file(u)
            if not f.exists():
                pki.write_private(f, Key.new(natsjwt.PREFIX_USER).seed)
        for m in mappers:
            self.mapper(m)
        if not self.metaserver_cert_file.exists():
            ca = pki.CA.create("edgebus-node-local-ca")
            key = pki.new_key()
            cert = ca.issue(key.public_key(), "metaserver", server=True, hosts=hosts, lifetime=dt.timedelta(days=3650))
            pki.write_private(self.metaserver_key_file, pki.key_pem(key))
            pki.write_public(self.metaserver_cert_file, pki.cert_pem(cert))
            pki.write_public(self.metaserver_ca_file, pki.cert_pem(ca.cert))

    def mapper(self, name: str) -> MapperCredential:
        """A mapper's credentials (made on first use): an MQTT user and password, and an nkey
        for mappers that speak NATS; both confined to KubeEdge's device topics."""
        f = self.dir / "local" / f"mapper-{name}.json"
        if not f.exists():
            pki.write_private(self.local_nkey_file(f"mapper-{name}"), Key.new(natsjwt.PREFIX_USER).seed)
            pw = secrets.token_urlsafe(18)
            doc = {"user": f"mapper-{name}", "password": pw, "hash": bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=10)).decode()}
            pki.write_private(f, json.dumps(doc))
        doc = json.loads(f.read_text())
        return MapperCredential(name, doc["user"], doc["password"], self.local_nkey_file(f"mapper-{name}"))

    def mapper_names(self) -> list[str]:
        return sorted(p.name[len("mapper-") : -len(".json")] for p in (self.dir / "local").glob("mapper-*.json"))

    def leaf_auth(self, node: str) -> LeafAuth:
        """The users of the node's server and its link's credential (see :class:`LeafAuth`)."""
        self.ensure_local()
        users = [LocalUser(nkey=Key.from_seed(self.local_nkey_file(u).read_text()).public) for u in SERVICE_USERS]
        perms = roles.mapper_permissions(node)
        for m in self.mapper_names():
            doc = json.loads((self.dir / "local" / f"mapper-{m}.json").read_text())
            users.append(LocalUser(user=doc["user"], password_hash=doc["hash"], permissions=perms))
            users.append(LocalUser(nkey=Key.from_seed(self.local_nkey_file(f"mapper-{m}").read_text()).public, permissions=perms))
        system = [LocalUser(nkey=Key.from_seed(self.local_nkey_file("system").read_text()).public)]
        return LeafAuth(users, system, str(self.creds_file), str(self.ca_file), str(self.link_cert_file), str(self.link_key_file))

    def node_name(self) -> str:
        return str(self.info["node"])

    def leaf_urls(self) -> list[str]:
        return [str(u) for u in self.info.get("leafUrls") or []]
