"""The authorizer chain, as ``--authorization-mode=Node,RBAC`` with the ``system:masters``
superuser group in front (or ``AlwaysAllow`` when authentication is off)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgebus.auth.attributes import Attributes
from edgebus.auth.node import NodeGraph, authorize_node
from edgebus.auth.rbac import Decision, RbacIndex
from edgebus.auth.user import UserInfo


@dataclass
class Authorizer:
    rbac: RbacIndex = field(default_factory=RbacIndex)
    #: the Node authorizer's relationships; None = no Node authorizer (the edge metaserver)
    graph: NodeGraph | None = None
    always_allow: bool = False

    def authorize(self, user: UserInfo, a: Attributes) -> Decision:
        if self.always_allow:
            return Decision(True, "authorization is off (AlwaysAllow)")
        if user.is_master:
            return Decision(True, "system:masters")
        reasons: list[str] = []
        if self.graph is not None:
            d = authorize_node(user, a, self.graph)
            if d.allowed or d.decided:
                return d
            if d.reason:
                reasons.append(d.reason)
        d = self.rbac.authorize(user, a)
        if d.allowed:
            return d
        if d.reason:
            reasons.append(d.reason)
        return Decision(False, ", ".join(reasons))
