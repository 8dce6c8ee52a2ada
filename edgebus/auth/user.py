"""Who a request comes from: Kubernetes' ``user.Info`` (name, uid, groups, extra).

The well-known names are Kubernetes' own: ``system:authenticated`` is added to every
authenticated user, ``system:unauthenticated`` marks the anonymous user, ServiceAccounts are
``system:serviceaccount:<namespace>:<name>`` in ``system:serviceaccounts`` and
``system:serviceaccounts:<namespace>``, nodes ``system:node:<name>`` in ``system:nodes``,
and ``system:masters`` is the superuser group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
MASTERS = "system:masters"
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
#: The user the lab's and operators' admin token names (in ``system:masters``).
ADMIN_USER = "edgebus-admin"


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def body(self) -> dict[str, object]:
        """The ``authentication.k8s.io/v1`` UserInfo shape (SelfSubjectReview, TokenReview)."""
        out: dict[str, object] = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups


ANONYMOUS_USER = UserInfo(ANONYMOUS, groups=(UNAUTHENTICATED,))


def with_authenticated(groups: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``groups`` plus ``system:authenticated`` (once, last), as Kubernetes' group adder."""
    out = [g for g in groups if g != AUTHENTICATED]
    return (*dict.fromkeys(out), AUTHENTICATED)


def service_account_user(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def parse_service_account(username: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of a ServiceAccount user name, else None."""
    if not username.startswith(SA_PREFIX):
        return None
    ns, sep, name = username[len(SA_PREFIX) :].partition(":")
    if not sep or not ns or not name or ":" in name:
        return None
    return ns, name


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return (SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED)


def node_user(node: str) -> UserInfo:
    """The identity a node's requests carry (over its own NATS API subject)."""
    return UserInfo(f"{NODE_PREFIX}{node}", groups=(NODES_GROUP, AUTHENTICATED))


def node_of(user: UserInfo) -> str | None:
    """The node a user is (``system:node:<name>`` in ``system:nodes``), else None."""
    if NODES_GROUP not in user.groups or not user.name.startswith(NODE_PREFIX):
        return None
    return user.name[len(NODE_PREFIX) :] or None
