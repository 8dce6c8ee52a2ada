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

from edgebus.identity import files, natsjwt, roles
from edgebus.identity.natsjwt import Key
from edgebus.natsd import LeafAuth, LocalUser

#: local users of every node's server with the whole local account
SERVICE_USERS = ("edgehub", "metamanager", "edged", "devicetwin", "edgemesh", "edgebus", "allinone")
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
            files.write_private(self.nkey_file, Key.new(natsjwt.PREFIX_USER).seed)
        return Key.from_seed(self.nkey_file.read_text())

    def link_not_after(self) -> dt.datetime | None:
        v = self.link_validity()
        return dt.datetime.fromtimestamp(v[1], dt.UTC) if v else None

    @property
    def link_validity_file(self) -> Path:
        return self.dir / "link.validity.json"

    def link_validity(self) -> tuple[float, float] | None:
        """(not before, not after) of the link certificate, as POSIX times. Read from
        ``link.validity.json``, written beside the certificate, so a node's services check it
        without loading the X.509 library; parsed from the certificate when that is missing
        or older."""
        if not self.link_cert_file.exists():
            return None
        f = self.link_validity_file
        try:
            if f.stat().st_mtime_ns >= self.link_cert_file.stat().st_mtime_ns:
                d = json.loads(f.read_text())
                return float(d["notBefore"]), float(d["notAfter"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return self._write_validity(self.link_cert_file.read_bytes())

    def _write_validity(self, cert_pem: bytes) -> tuple[float, float]:
        from edgebus.identity import pki

        cert = pki.load_certs(cert_pem)[0]
        v = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
        files.write_public(self.link_validity_file, json.dumps({"notBefore": v[0], "notAfter": v[1]}) + "\n")
        return v

    # -- writing what the cloud issued --------------------------------------------------
    def save_join(self, answer: dict[str, Any], link_key_pem: bytes) -> None:
        """Store a join (or renewal) answer: credential, link certificate, CA bundle, facts."""
        key = self.identity_key()
        if answer.get("jwt"):
            files.write_private(self.dir / "node.jwt", answer["jwt"])
            files.write_private(self.creds_file, natsjwt.creds(answer["jwt"], key))
        self.save_link(answer["certificate"].encode(), link_key_pem, answer.get("ca", "").encode())
        if answer.get("tokenKeys"):
            files.write_public(self.token_keys_file, "".join(answer["tokenKeys"]))
        facts: dict[str, Any] = {k: answer[k] for k in ("node", "cloudDomain", "leafUrls", "apiserver", "linkLifetimeSeconds", "renewWindowSeconds") if k in answer}
        old = json.loads(self.info_file.read_text()) if self.info_file.exists() else {}
        facts.setdefault("joinedAt", str(old.get("joinedAt") or dt.datetime.now(dt.UTC).isoformat()))
        files.write_public(self.info_file, json.dumps({**old, **facts}, indent=2) + "\n")

    def save_link(self, cert_pem: bytes, key_pem: bytes, ca_pem: bytes = b"") -> None:
        # key first: a certificate is only usable with it, and the server reads both on reload
        files.write_private(self.link_key_file, key_pem)
        files.write_public(self.link_cert_file, cert_pem)
        self._write_validity(cert_pem)
        if ca_pem:
            files.write_public(self.ca_file, ca_pem)

    # -- the node's own server -------------------------------------------------------------
    def ensure_local(self, mappers: tuple[str, ...] = MAPPERS, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> None:
        """The node's local credentials (made once): its services' nkeys, its mappers', and
        the metaserver's serving certificate (from a CA of the node's own: the metaserver is a
        local endpoint, and works before the node ever joined)."""
        for u in (*SERVICE_USERS, "system"):
            f = self.local_nkey_file(u)
            if not f.exists():
                files.write_private(f, Key.new(natsjwt.PREFIX_USER).seed)
        for m in mappers:
            self.mapper(m)
        if not self.metaserver_cert_file.exists():
            from edgebus.identity import pki  # X.509 only where a certificate is made

            ca = pki.CA.create("edgebus-node-local-ca")
            key = pki.new_key()
            cert = ca.issue(key.public_key(), "metaserver", server=True, hosts=hosts, lifetime=dt.timedelta(days=3650))
            files.write_private(self.metaserver_key_file, pki.key_pem(key))
            files.write_public(self.metaserver_cert_file, pki.cert_pem(cert))
            files.write_public(self.metaserver_ca_file, pki.cert_pem(ca.cert))

    def mapper(self, name: str) -> MapperCredential:
        """A mapper's credentials (made on first use): an MQTT user and password, and an nkey
        for mappers that speak NATS; both confined to KubeEdge's device topics."""
        f = self.dir / "local" / f"mapper-{name}.json"
        if not f.exists():
            files.write_private(self.local_nkey_file(f"mapper-{name}"), Key.new(natsjwt.PREFIX_USER).seed)
            import bcrypt  # only where a mapper's password is made

            pw = secrets.token_urlsafe(18)
            doc = {"user": f"mapper-{name}", "password": pw, "hash": bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=10)).decode()}
            files.write_private(f, json.dumps(doc))
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
