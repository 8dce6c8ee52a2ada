"""API security for edgebus's Kubernetes-style servers: who a request comes from
(bearer tokens: ES256 JWTs for users and ServiceAccounts), what it asks to do (Kubernetes'
request attributes), and whether it may (RBAC, the Node authorizer, ``system:masters``);
plus Pod Security Admission and the default policy.

Pure library code over the object model: the servers feed it objects from their watches
(the apiserver) or their local store (an edge metaserver). It never talks to NATS or LMDB.
"""

from edgebus.auth.attributes import Attributes, forbidden, forbidden_message, request_attributes
from edgebus.auth.authz import Authorizer
from edgebus.auth.node import NodeGraph, authorize_node
from edgebus.auth.rbac import NO_OPINION, PLURALS as RBAC_PLURALS, Decision, RbacIndex, Rule, rules_of, uncovered
from edgebus.auth.settings import ANONYMOUS_PATHS, AuthSettings
from edgebus.auth.tokens import InvalidToken, Issuer, Verifier, generate_key_pair, key_id
from edgebus.auth.user import ADMIN_USER, ANONYMOUS_USER, MASTERS, UserInfo, node_of, node_user

__all__ = [
    "ADMIN_USER",
    "ANONYMOUS_PATHS",
    "ANONYMOUS_USER",
    "MASTERS",
    "NO_OPINION",
    "RBAC_PLURALS",
    "Attributes",
    "AuthSettings",
    "Authorizer",
    "Decision",
    "InvalidToken",
    "Issuer",
    "NodeGraph",
    "RbacIndex",
    "Rule",
    "UserInfo",
    "Verifier",
    "authorize_node",
    "forbidden",
    "forbidden_message",
    "generate_key_pair",
    "key_id",
    "node_of",
    "node_user",
    "request_attributes",
    "rules_of",
    "uncovered",
]
