"""The cloud's trust material: the cluster CA, the NATS operator and accounts, and the
credentials of the cloud's own processes.

Everything lives in one directory (``pki/``, mode 0700, secrets 0600), created on first use
and reused after::

    ca.crt ca.key                 the cluster CA (ca.crt is the trust bundle: several CAs
                                  may be listed while one is being replaced)
    server.crt server.key         the cloud's TLS server certificate (NATS ports, apiserver)
    operator.nk operator.jwt      the NATS operator (its seed is only needed to re-sign the
                                  operator JWT: keep it offline in production)
    operator-signer.nk            signs the account JWTs (cloudhub: revocations)
    sys-account.nk account.nk     the system account and the EDGEBUS account
    account-signer.nk             signs the users of cloud services and admins
    node-signer.nk                the scoped key that signs node credentials (cloudhub)
    site-signer.nk                the scoped key that signs site servers' uplink credentials
    users/<name>.creds            NATS credentials of cloud services, admins, and the
                                  system user cloudhub pushes account updates with
    keys/sa.key keys/sa.pub       the API's token signing key (ServiceAccount and user tokens)
    admin.token                   the API token of the lab's admin (system:masters)
    identity.json                 public facts: keys, CA pin, the hosts the certificate names
    account.iat                   the issue second of the last account JWT (see account_jwt)
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebus import names
from edgebus.identity import natsjwt, pki, roles
from edgebus.identity.natsjwt import Key
from edgebus.natsd import HubAuth, ServerTls

ACCOUNT_NAME = "EDGEBUS"
SYSTEM_ACCOUNT_NAME = "SYS"
#: the scoped signing key's role name (shown by nats-server and `nsc`)
NODE_ROLE = "node"
SITE_ROLE = "site"
#: the users the cloud's own processes connect as (one credential each)
CLOUD_USERS = ("apiserver", "cloudhub", "edgecontroller", "devicecontroller", "endpointcontroller", "admin")


def _read(p: Path) -> str:
    return p.read_text().strip()


_iat_lock = threading.Lock()
#: the last account issue second handed out in this process, per PKI dir
_last_iat: dict[Path, int] = {}


@dataclass
class CloudPki:
    """The trust material in ``dir`` (see the module doc)."""

    dir: Path

    # -- paths --------------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key_file(self) -> Path:
        return self.dir / "ca.key"

    @property
    def server_cert_file(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key_file(self) -> Path:
        return self.dir / "server.key"

    def creds_file(self, user: str) -> Path:
        return self.dir / "users" / f"{user}.creds"

    @property
    def sys_creds_file(self) -> Path:
        return self.creds_file("system")

    def _key(self, name: str) -> Key:
        return Key.from_seed(_read(self.dir / f"{name}.nk"))

    @property
    def info(self) -> dict[str, Any]:
        return dict(json.loads((self.dir / "identity.json").read_text()))

    @property
    def exists(self) -> bool:
        return (self.dir / "identity.json").exists()

    # -- creation -----------------------------------------------------------------------
    @classmethod
    def ensure(cls, dir: str | Path, *, hosts: list[str], users: tuple[str, ...] = CLOUD_USERS) -> CloudPki:
        """Create what is missing (idempotent); a server certificate that does not name every
        host in ``hosts`` is re-issued."""
        p = cls(Path(dir))
        p.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        p.dir.chmod(0o700)
        if not p.ca_file.exists():
            ca = pki.CA.create()
            pki.write_private(p.ca_key_file, pki.key_pem(ca.key))
            pki.write_public(p.ca_file, pki.cert_pem(ca.cert))
        for name, prefix in (
            ("operator", natsjwt.PREFIX_OPERATOR),
            ("operator-signer", natsjwt.PREFIX_OPERATOR),
            ("sys-account", natsjwt.PREFIX_ACCOUNT),
            ("account", natsjwt.PREFIX_ACCOUNT),
            ("account-signer", natsjwt.PREFIX_ACCOUNT),
            ("node-signer", natsjwt.PREFIX_ACCOUNT),
            ("site-signer", natsjwt.PREFIX_ACCOUNT),
        ):
            f = p.dir / f"{name}.nk"
            if not f.exists():
                pki.write_private(f, Key.new(prefix).seed)
        op, sys_acc, acc = p._key("operator"), p._key("sys-account"), p._key("account")
        info = {
            "operator": op.public,
            "operatorSigner": p._key("operator-signer").public,
            "systemAccount": sys_acc.public,
            "account": acc.public,
            "accountSigner": p._key("account-signer").public,
            "nodeSigner": p._key("node-signer").public,
            "siteSigner": p._key("site-signer").public,
            "caPin": pki.spki_sha256(p.ca().cert),
            "hosts": sorted(set(hosts)),
        }
        old = p.info if p.exists else {}
        if not (p.dir / "operator.jwt").exists():
            pki.write_public(p.dir / "operator.jwt", natsjwt.operator_jwt(op, name="edgebus", system_account=sys_acc.public, signing_keys=[str(info["operatorSigner"])]))
        if old.get("hosts") != info["hosts"] or not p.server_cert_file.exists():
            key = pki.new_key()
            cert = p.ca().issue(key.public_key(), "edgebus-cloud", server=True, client=True, hosts=info["hosts"], lifetime=dt.timedelta(days=825))
            pki.write_private(p.server_key_file, pki.key_pem(key))
            pki.write_public(p.server_cert_file, pki.cert_pem(cert))
        pki.write_public(p.dir / "identity.json", json.dumps(info, indent=2) + "\n")
        for u in users:
            if not p.creds_file(u).exists():
                p.issue_user_creds(u)
        if not p.sys_creds_file.exists():
            user = Key.new(natsjwt.PREFIX_USER)
            jwt = natsjwt.user_jwt(sys_acc, user.public, account=sys_acc.public, name="cloudhub-system")
            pki.write_private(p.sys_creds_file, natsjwt.creds(jwt, user))
        return p

    # -- what servers and services need -------------------------------------------------
    @property
    def token_signing_key(self) -> Path:
        return self.dir / "keys" / "sa.key"

    @property
    def token_verify_keys(self) -> Path:
        return self.dir / "keys" / "sa.pub"

    def token_keys(self) -> list[str]:
        """The API token verification keys (PEM), handed to nodes for their metaservers."""
        return [self.token_verify_keys.read_text()] if self.token_verify_keys.exists() else []

    def ca(self) -> pki.CA:
        return pki.CA.load(self.ca_file, self.ca_key_file)

    def ca_bundle(self) -> bytes:
        return self.ca_file.read_bytes()

    def operator_jwt(self) -> str:
        return _read(self.dir / "operator.jwt")

    def system_account_jwt(self) -> str:
        return natsjwt.account_jwt(self._key("operator-signer"), self.info["systemAccount"], name=SYSTEM_ACCOUNT_NAME)

    def account_jwt(self, revocations: dict[str, int] | None = None, *, cloud_domain: str = names.CLOUD_DOMAIN, now: int | None = None) -> str:
        """The EDGEBUS account: JetStream, the unscoped signer of cloud users, the scoped
        signer of nodes with their permission template, and the revoked users. Issued
        strictly later than any account JWT before it (see ``_account_iat``)."""
        info = self.info
        nodes = {"kind": "user_scope", "key": info["nodeSigner"], "role": NODE_ROLE, "template": roles.node_template(cloud_domain)}
        sites = {"kind": "user_scope", "key": info["siteSigner"], "role": SITE_ROLE, "template": roles.site_template(cloud_domain)}
        return natsjwt.account_jwt(
            self._key("operator-signer"),
            info["account"],
            name=ACCOUNT_NAME,
            jetstream=True,
            signing_keys=[info["accountSigner"], nodes, sites],
            revocations=revocations,
            now=now if now is not None else self._account_iat(),
        )

    def _account_iat(self) -> int:
        """An issue second later than every account JWT issued from this PKI before. The
        servers' resolvers keep the newer of two account JWTs by issue second and take
        either when the seconds are equal, so a revocation issued in the same second as a
        server's preloaded account (a lab that starts and revokes at once) could be undone
        by that server's copy when they sync. Kept in ``account.iat`` (best effort: a
        read-only dir keeps the count in this process only)."""
        path = self.dir / "account.iat"
        with _iat_lock:
            try:
                stored = int(path.read_text())
            except (OSError, ValueError):
                stored = 0
            iat = max(int(time.time()), stored + 1, _last_iat.get(self.dir, 0) + 1)
            _last_iat[self.dir] = iat
            try:
                pki.write_public(path, f"{iat}\n")
            except OSError:
                pass
        return iat

    def hub_auth(self, resolver_dir: str, *, client_tls: bool = True, revocations: dict[str, int] | None = None) -> HubAuth:
        info = self.info
        return HubAuth(
            operator_jwt=self.operator_jwt(),
            system_account=info["systemAccount"],
            resolver_dir=resolver_dir,
            preload={info["systemAccount"]: self.system_account_jwt(), info["account"]: self.account_jwt(revocations)},
            tls=ServerTls(str(self.server_cert_file), str(self.server_key_file), str(self.ca_file)),
            client_tls=client_tls,
        )

    def issue_user_creds(self, name: str) -> Path:
        """Credentials with the whole account (a cloud service, an admin)."""
        user = Key.new(natsjwt.PREFIX_USER)
        jwt = natsjwt.user_jwt(self._key("account-signer"), user.public, account=self.info["account"], name=name)
        path = self.creds_file(name)
        pki.write_private(path, natsjwt.creds(jwt, user))
        return path

    # -- nodes ----------------------------------------------------------------------------
    def node_jwt(self, node: str, nkey: str) -> str:
        """A node's NATS credential: its own nkey, signed by the scoped node signer (so its
        permissions and connection types are the account's node template, with its token);
        no expiry (revocation ends it; the link certificate bounds its use)."""
        return natsjwt.user_jwt(self._key("node-signer"), nkey, account=self.info["account"], name=names.encode_token(node), scoped=True, tags=[f"node:{names.encode_token(node)}"])

    def site_jwt(self, site: str, nkey: str, members: list[str]) -> str:
        """A site server's uplink credential: the permissions of each member node (one
        ``node:<token>`` tag each), and of the site's own JetStream domain."""
        tags = [f"node:{names.encode_token(n)}" for n in members]
        return natsjwt.user_jwt(self._key("site-signer"), nkey, account=self.info["account"], name=names.encode_token(site), scoped=True, tags=tags)

    def site_auth(self, resolver_dir: str) -> dict[str, Any]:
        """What a site server needs to verify its member nodes itself: the operator, the
        system account and this account (preloaded; the site learns updates from the hub)."""
        info = self.info
        return {"operator_jwt": self.operator_jwt(), "system_account": info["systemAccount"], "preload": {info["systemAccount"]: self.system_account_jwt(), info["account"]: self.account_jwt()}, "account": info["account"]}

    def link_cert(self, node: str, csr_pem: bytes, lifetime: dt.timedelta) -> bytes:
        cert = self.ca().issue_for_csr(csr_pem, cn=f"system:node:{node}", lifetime=lifetime)
        return pki.cert_pem(cert)
