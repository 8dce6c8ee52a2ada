"""Who may use this node's metaserver, decided on the node alone (also offline).

* the **local admin token** (``metamanager.admin_token_file``, created 0600 at start when
  missing; ``edgebus kubeconfig --node N`` puts it in the kubeconfig): user
  ``edgebus:node-admin:<node>``, who may read everything the node holds;
* **ServiceAccount (and user) tokens** of the cluster, verified with the cluster's
  verification keys (``metamanager.auth.token_keys``) and authorized with RBAC evaluated
  from the Roles, ClusterRoles and bindings the node holds (edgecontroller sends them to
  every node);
* no credentials: ``401`` (the anonymous paths ``/healthz`` ... go to RBAC as
  ``system:anonymous``).

Writes are then forwarded to the cloud as the node itself (its own API subject), where the
Node authorizer decides: a node-local admin can write only what a node may.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from typing import Any

from edgebus.auth import Attributes, Authorizer, Decision, InvalidToken, RbacIndex, UserInfo, Verifier
from edgebus.auth.rbac import PLURALS as RBAC_PLURALS
from edgebus.auth.settings import AuthSettings
from edgebus.auth.tokens import write_secret
from edgebus.auth.user import AUTHENTICATED
from edgebus.objects import RBAC_RESOURCES
from services.metamanager.store import Change, MetaStore

log = logging.getLogger("edgebus.metaserver.auth")

NODE_ADMINS = "edgebus:node-admins"


def ensure_admin_token(path: str | Path) -> str:
    """The node's local admin token, created (random, 0600) when the file is missing."""
    p = Path(path)
    if not p.exists():
        write_secret(p, secrets.token_urlsafe(32).encode() + b"\n")
        log.info("created the local admin token %s", p)
    token = p.read_text().strip()
    if len(token) < 16:
        raise SystemExit(f"{p}: the local admin token is too short (at least 16 characters)")
    return token


class LocalSecurity:
    def __init__(self, node: str, store: MetaStore, auth: AuthSettings, *, admin_token_file: str = "") -> None:
        self.node = node
        self.store = store
        self.admin_token = ensure_admin_token(admin_token_file) if admin_token_file else None
        self.verifier: Verifier | None = auth.verifier()
        self.admin = UserInfo(f"edgebus:node-admin:{node}", groups=(NODE_ADMINS, AUTHENTICATED))
        self.authorizer = Authorizer(RbacIndex())
        self.load()

    def load(self) -> None:
        """(Re)build the RBAC index from the store."""
        self.authorizer.rbac.clear()
        for r in RBAC_RESOURCES:
            for _key, obj in self.store.objects.items(r.lmdb_prefix()):
                self.authorizer.rbac.apply(r.plural, obj)

    def on_change(self, ch: Change) -> None:
        """A committed change (metamanager's listener): keep the index current."""
        if ch.resource not in RBAC_PLURALS:
            return
        obj: dict[str, Any] = ch.object or {"metadata": {"name": ch.name, "namespace": ch.namespace}}
        self.authorizer.rbac.apply(ch.resource, obj, deleted=ch.type == "DELETED")

    async def authenticate(self, token: str) -> UserInfo:
        if self.admin_token is not None and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return self.admin
        if self.verifier is None:
            raise InvalidToken("not this node's admin token, and no cluster verification key configured")
        return self.verifier.authenticate(token)

    async def authorize(self, user: UserInfo, attrs: Attributes) -> Decision:
        if user is self.admin or (user.name == self.admin.name and NODE_ADMINS in user.groups):
            return Decision(True, "the node's local admin")
        return self.authorizer.authorize(user, attrs)
