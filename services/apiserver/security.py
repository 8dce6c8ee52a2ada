"""Authentication, authorization and the objects they need, for the apiserver.

* :class:`Security` authenticates bearer tokens (user and ServiceAccount tokens; a
  ServiceAccount token is valid only while its ServiceAccount exists with the uid it names,
  as in Kubernetes) and authorizes with ``system:masters``, the Node authorizer and RBAC -
  or lets everything through (AlwaysAllow) when no verification key is configured.
* :meth:`Security.follow` (the supervised task ``security``) watches the RBAC kinds,
  ServiceAccounts and Namespaces (and, with authentication on, pods and Devices for the
  Node authorizer's graph), keeps the indexes, and creates a namespace's ``default``
  ServiceAccount when it is missing (Kubernetes' ServiceAccount controller).
* :func:`ensure_policy`: the default ClusterRoles and bindings, created at start if missing.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from typing import Any

from edgebus.auth import Attributes, Authorizer, Decision, InvalidToken, Issuer, NodeGraph, RbacIndex, UserInfo, policy
from edgebus.auth.settings import AuthSettings
from edgebus.auth.user import parse_service_account
from edgebus.errors import AlreadyExists, NotFound, Unavailable
from edgebus.objects import CLUSTERROLEBINDINGS, CLUSTERROLES, DEVICES, NAMESPACES, PODS, RBAC_RESOURCES, SERVICEACCOUNTS
from edgebus.objectstore import BOOKMARK, DELETED, ObjectStore

log = logging.getLogger("edgebus.apiserver.security")

#: how long a request waits for the first sync of the RBAC objects before a 503
SYNC_WAIT = 10.0
DEFAULT_SA = "default"


async def ensure_policy(store: ObjectStore) -> int:
    """Create the default ClusterRoles and ClusterRoleBindings that are missing; how many."""
    made = 0
    for resource, objs in ((CLUSTERROLES, policy.cluster_roles()), (CLUSTERROLEBINDINGS, policy.cluster_role_bindings())):
        for obj in objs:
            try:
                await store.create(resource, obj)
                made += 1
            except AlreadyExists:
                pass
    if made:
        log.info("created %d default RBAC objects", made)
    return made


class Security:
    def __init__(self, store: ObjectStore, auth: AuthSettings, *, signing_key: str = "") -> None:
        self.store = store
        self.settings = auth
        self.verifier = auth.verifier()
        self.issuer = Issuer.from_file(signing_key, auth.issuer, auth.audiences) if signing_key else None
        self.graph = NodeGraph()
        self.authorizer = Authorizer(RbacIndex(), self.graph, always_allow=not auth.enabled)
        #: (namespace, name) -> uid of every ServiceAccount
        self.service_accounts: dict[tuple[str, str], str] = {}
        self.namespaces: set[str] = set()
        self.synced = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    # -- the guard's callbacks ----------------------------------------------------------
    async def authenticate(self, token: str) -> UserInfo:
        assert self.verifier is not None
        user = self.verifier.authenticate(token)
        sa = parse_service_account(user.name)
        if sa is not None:
            await self._wait_synced()
            uid = self.service_accounts.get(sa)
            if uid is None:
                raise InvalidToken(f'serviceaccounts "{sa[1]}" not found in namespace {sa[0]}')
            if user.uid and uid != user.uid:
                raise InvalidToken(f"the ServiceAccount {sa[0]}/{sa[1]} was recreated (uid {uid}, token for {user.uid})")
        return user

    async def authorize(self, user: UserInfo, attrs: Attributes) -> Decision:
        if not self.authorizer.always_allow and not user.is_master:
            await self._wait_synced()
        return self.authorizer.authorize(user, attrs)

    async def _wait_synced(self) -> None:
        if self.synced.is_set():
            return
        try:
            await asyncio.wait_for(self.synced.wait(), SYNC_WAIT)
        except TimeoutError:
            raise Unavailable("the apiserver has not loaded its authorization objects yet; try again") from None

    def ready(self) -> bool:
        return self.synced.is_set()

    # -- following the objects ------------------------------------------------------------
    def watched(self) -> list[Any]:
        out = [*RBAC_RESOURCES, SERVICEACCOUNTS, NAMESPACES]
        return [*out, PODS, DEVICES] if self.enabled else out

    async def follow(self) -> None:
        """Keep the indexes from a watch; runs until cancelled (restarted by the supervisor)."""
        self.synced.clear()
        self.authorizer.rbac.clear()
        self.graph = self.authorizer.graph = NodeGraph()
        self.service_accounts.clear()
        self.namespaces.clear()
        async with aclosing(self.store.watch(self.watched(), bookmarks=True)) as it:
            async for ev in it:
                if ev.type == BOOKMARK:
                    self.synced.set()
                    log.info("authorization objects loaded: %d bindings, %d service accounts", len(self.authorizer.rbac.bindings), len(self.service_accounts))
                    for ns in sorted(self.namespaces):
                        await self._ensure_default_sa(ns)
                    continue
                self.apply(ev.resource.plural, ev.object, deleted=ev.type == DELETED)
                if ev.resource is NAMESPACES and ev.type != DELETED and self.synced.is_set():
                    await self._ensure_default_sa((ev.object.get("metadata") or {}).get("name") or "")

    def apply(self, plural: str, obj: dict[str, Any], *, deleted: bool) -> None:
        md = obj.get("metadata") or {}
        ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
        if plural in ("pods", "devices"):
            self.graph.apply(plural, obj, deleted=deleted)
        elif plural == SERVICEACCOUNTS.plural:
            if deleted:
                self.service_accounts.pop((ns, name), None)
            else:
                self.service_accounts[(ns, name)] = str(md.get("uid") or "")
        elif plural == NAMESPACES.plural:
            if deleted or md.get("deletionTimestamp"):
                self.namespaces.discard(name)
            else:
                self.namespaces.add(name)
        else:
            self.authorizer.rbac.apply(plural, obj, deleted=deleted)

    async def _ensure_default_sa(self, namespace: str) -> None:
        if not namespace or (namespace, DEFAULT_SA) in self.service_accounts:
            return
        try:
            await self.store.create(SERVICEACCOUNTS, {"metadata": {"name": DEFAULT_SA, "namespace": namespace}}, namespace=namespace)
            log.info("created ServiceAccount %s/%s", namespace, DEFAULT_SA)
        except (AlreadyExists, NotFound):
            pass  # another replica made it, or the namespace is going away
        except Exception as exc:  # a namespace being terminated, a bus hiccup: the next event retries
            log.warning("could not create ServiceAccount %s/%s: %s", namespace, DEFAULT_SA, exc)
