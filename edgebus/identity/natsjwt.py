"""NATS decentralized-auth JWTs (operator, account and user claims, version 2) and creds files.

nats-server verifies these itself: a user JWT signed by a signing key of an account whose JWT
is signed by a trusted operator, and the connection's nonce signed with the user's nkey. The
format (``alg: ed25519-nkey``, claims under ``nats``) is nats-io's JWT v2; keys are nkeys
(ed25519 with type prefixes) from the ``nkeys`` package.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nkeys

PREFIX_OPERATOR = nkeys.PREFIX_BYTE_OPERATOR
PREFIX_ACCOUNT = nkeys.PREFIX_BYTE_ACCOUNT
PREFIX_USER = nkeys.PREFIX_BYTE_USER

#: no limit (nats' -1) for subscriptions, data and payload
UNLIMITED = {"subs": -1, "data": -1, "payload": -1}
ACCOUNT_LIMITS = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}
JETSTREAM_UNLIMITED = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


class JwtError(ValueError):
    """A JWT or creds file that cannot be read."""


@dataclass(frozen=True)
class Key:
    """An nkey pair (or only its public half)."""

    public: str
    seed: str = ""

    @classmethod
    def new(cls, prefix: int) -> Key:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        kp = nkeys.from_seed(bytearray(seed))
        return cls(kp.public_key.decode(), seed.decode())

    @classmethod
    def from_seed(cls, seed: str) -> Key:
        try:
            kp = nkeys.from_seed(bytearray(seed.strip().encode()))
        except Exception as exc:
            raise JwtError(f"not an nkey seed: {exc}") from None
        return cls(kp.public_key.decode(), seed.strip())

    def sign(self, data: bytes) -> bytes:
        if not self.seed:
            raise JwtError("a public key cannot sign")
        return bytes(nkeys.from_seed(bytearray(self.seed.encode())).sign(data))


def _raw_public(public: str) -> bytes:
    """The ed25519 key inside an nkey public key (base32 of prefix byte, key, CRC-16)."""
    raw = base64.b32decode(public + "=" * (-len(public) % 8))
    if len(raw) != 35 or not nkeys.valid_public_prefix_byte(raw[0]) or nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
        raise JwtError(f"{public[:8]}… is not an nkey public key")
    return raw[1:33]


def verify(public: str, data: bytes, signature: bytes) -> bool:
    """True if ``signature`` is ``public``'s signature of ``data``."""
    from cryptography.exceptions import InvalidSignature  # only where signatures are checked (the cloud)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(_raw_public(public)).verify(signature, data)
        return True
    except (InvalidSignature, JwtError, ValueError):
        return False


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


_HEADER = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}, separators=(",", ":")).encode())


def encode(claims: dict[str, Any], signer: Key, *, now: int | None = None) -> str:
    """Sign ``claims`` (``iss`` is set to the signer); ``jti`` is the claims' hash, as nats does."""
    c = dict(claims)
    c["iss"] = signer.public
    c.setdefault("iat", int(now if now is not None else time.time()))
    c["jti"] = ""
    digest = hashlib.new("sha512_256", json.dumps(c, sort_keys=True, separators=(",", ":")).encode()).digest()
    c["jti"] = base64.b32encode(digest).decode().rstrip("=")
    body = _b64(json.dumps(c, separators=(",", ":")).encode())
    sig = signer.sign(f"{_HEADER}.{body}".encode())
    return f"{_HEADER}.{body}.{_b64(sig)}"


def decode(token: str, *, verify_signature: bool = True) -> dict[str, Any]:
    """The claims of a JWT, after checking it is signed by its ``iss``."""
    try:
        h, b, s = token.strip().split(".")
        claims = json.loads(_unb64(b))
    except ValueError as exc:
        raise JwtError(f"not a JWT: {exc}") from None
    if verify_signature and not verify(str(claims.get("iss", "")), f"{h}.{b}".encode(), _unb64(s)):
        raise JwtError("JWT signature does not verify")
    return dict(claims)


# -- claims ------------------------------------------------------------------------------


def operator_jwt(operator: Key, *, name: str, system_account: str, signing_keys: Sequence[str] = ()) -> str:
    nats: dict[str, Any] = {"type": "operator", "version": 2, "system_account": system_account}
    if signing_keys:
        nats["signing_keys"] = list(signing_keys)
    return encode({"sub": operator.public, "name": name, "nats": nats}, operator)


def account_jwt(
    signer: Key,
    account: str,
    *,
    name: str,
    jetstream: bool = False,
    signing_keys: Sequence[Any] = (),
    revocations: dict[str, int] | None = None,
    now: int | None = None,
) -> str:
    """An account's JWT, signed by the operator (or one of its signing keys). ``signing_keys``
    are public keys or scoped ``{"kind": "user_scope", "key", "role", "template"}`` entries;
    ``revocations`` maps user public keys to a time: their JWTs issued at or before it are
    refused and their connections closed."""
    nats: dict[str, Any] = {
        "type": "account",
        "version": 2,
        "limits": {**ACCOUNT_LIMITS, **(JETSTREAM_UNLIMITED if jetstream else {})},
        "default_permissions": {"pub": {}, "sub": {}},
    }
    if signing_keys:
        nats["signing_keys"] = list(signing_keys)
    if revocations:
        nats["revocations"] = dict(sorted(revocations.items()))
    return encode({"sub": account, "name": name, "nats": nats}, signer, now=now)


def user_jwt(
    signer: Key,
    user: str,
    *,
    account: str,
    name: str,
    permissions: dict[str, Any] | None = None,
    scoped: bool = False,
    connection_types: list[str] | None = None,
    tags: list[str] | None = None,
    expires: int | None = None,
) -> str:
    """A user's JWT. With ``scoped``, the signer is a scoped signing key of the account and
    the permissions come from its template (the JWT may then carry none)."""
    nats: dict[str, Any] = {"type": "user", "version": 2}
    if not scoped:
        nats.update(UNLIMITED)
        nats.update(permissions or {})
    if signer.public != account:
        nats["issuer_account"] = account
    if connection_types:
        nats["allowed_connection_types"] = list(connection_types)
    if tags:
        nats["tags"] = list(tags)
    claims: dict[str, Any] = {"sub": user, "name": name, "nats": nats}
    if expires:
        claims["exp"] = int(expires)
    return encode(claims, signer)


def permissions(pub: list[str] | None = None, sub: list[str] | None = None, *, responses: int | None = None) -> dict[str, Any]:
    """A ``{"pub": {"allow": ...}, "sub": {"allow": ...}}`` permission block (None = unrestricted)."""
    out: dict[str, Any] = {"pub": {"allow": list(pub)} if pub is not None else {}, "sub": {"allow": list(sub)} if sub is not None else {}}
    if responses is not None:
        out["resp"] = {"max": responses, "ttl": 0}
    return out


# -- creds files ---------------------------------------------------------------------------


def creds(jwt: str, user: Key) -> str:
    """A ``.creds`` file: the user JWT and its nkey seed (what nats clients and leaf remotes read)."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def read_creds(text: str) -> tuple[str, Key]:
    """The JWT and the key of a ``.creds`` file."""
    try:
        jwt = text.split("-----BEGIN NATS USER JWT-----", 1)[1].split("------END NATS USER JWT------", 1)[0].strip()
        seed = text.split("-----BEGIN USER NKEY SEED-----", 1)[1].split("------END USER NKEY SEED------", 1)[0].strip()
    except IndexError:
        raise JwtError("not a NATS creds file") from None
    return jwt, Key.from_seed(seed)
