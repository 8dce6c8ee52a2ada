"""Bearer tokens: JWTs signed with ES256 (ECDSA P-256), keys in PEM files.

Two kinds, both verified by the same :class:`Verifier`:

* **user tokens** (``edgebus token``-style credentials for people and tools): ``sub`` is the
  user name, ``groups`` its groups, ``exp`` optional (a token without one never expires;
  revoke it by rotating the key);
* **ServiceAccount tokens**, with the claims Kubernetes puts in them (``iss``, ``sub:
  system:serviceaccount:<ns>:<name>``, ``aud``, ``exp``, ``iat``, ``nbf``, ``jti`` and
  ``kubernetes.io: {namespace, serviceaccount: {name, uid}[, pod: {name, uid}]}``), as the
  TokenRequest API (``kubectl create token``) issues them.

Every token names its key in the ``kid`` header: the base64url SHA-256 of the public key's
DER encoding, as Kubernetes computes it. A verifier holds several keys (files with one or
more PEM blocks, public or private), so a new signing key can be introduced while tokens of
the old one stay valid until its file is removed; files are re-read when they change.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgebus.auth.user import UserInfo, parse_service_account, service_account_groups, with_authenticated

ALGORITHM = "ES256"
#: Kubernetes' default issuer and audience (kubeadm's ``--service-account-issuer``).
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCE = DEFAULT_ISSUER
#: ``kubectl create token`` without ``--duration``: one hour, as Kubernetes.
DEFAULT_SA_SECONDS = 3600
#: Kubernetes refuses TokenRequests shorter than ten minutes.
MIN_SA_SECONDS = 600
#: Clock skew tolerated on ``exp``/``nbf``/``iat``.
LEEWAY = 30
K8S_CLAIM = "kubernetes.io"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"


class InvalidToken(Exception):
    """The bearer token is not one of ours, or no longer valid (answered with 401)."""


# -- keys ------------------------------------------------------------------------------


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def generate_key_pair(private_path: str | Path, public_path: str | Path | None = None) -> str:
    """A new P-256 signing key: the private key (PKCS#8 PEM, mode 0600) and, if asked, its
    public key (PEM) beside it. Returns the key id."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_secret(private_path, pem)
    if public_path is not None:
        Path(public_path).parent.mkdir(parents=True, exist_ok=True)
        Path(public_path).write_bytes(public_pem(key.public_key()))
    return key_id(key.public_key())


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_secret(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only (0600 from the start)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, p)


def load_private_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"{path}: not a P-256 (ES256) private key")
    return key


def _pem_blocks(data: bytes) -> list[bytes]:
    out, cur = [], []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN "):
            cur = [line]
        elif cur:
            cur.append(line)
            if line.startswith(b"-----END "):
                out.append(b"".join(cur))
                cur = []
    return out


def load_public_keys(path: str | Path) -> list[ec.EllipticCurvePublicKey]:
    """Every P-256 key in a PEM file (public keys, or private keys whose public half is used)."""
    keys: list[ec.EllipticCurvePublicKey] = []
    for block in _pem_blocks(Path(path).read_bytes()):
        if b"PRIVATE KEY" in block.split(b"\n", 1)[0]:
            k: Any = serialization.load_pem_private_key(block, password=None).public_key()
        else:
            k = serialization.load_pem_public_key(block)
        if not isinstance(k, ec.EllipticCurvePublicKey) or not isinstance(k.curve, ec.SECP256R1):
            raise ValueError(f"{path}: not a P-256 (ES256) key")
        keys.append(k)
    if not keys:
        raise ValueError(f"{path}: no PEM key in it")
    return keys


# -- issuing ---------------------------------------------------------------------------


@dataclass
class Issuer:
    """Signs tokens with one private key."""

    key: ec.EllipticCurvePrivateKey
    issuer: str = DEFAULT_ISSUER
    audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)

    @classmethod
    def from_file(cls, path: str | Path, issuer: str = DEFAULT_ISSUER, audiences: Iterable[str] = (DEFAULT_AUDIENCE,)) -> Issuer:
        return cls(load_private_key(path), issuer, tuple(audiences))

    @property
    def kid(self) -> str:
        return key_id(self.key.public_key())

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def user_token(self, name: str, groups: Iterable[str] = (), *, ttl: float | None = None, now: float | None = None) -> str:
        """A token for user ``name`` in ``groups`` (no expiry unless ``ttl`` seconds)."""
        t = int(now if now is not None else time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": name, "aud": list(self.audiences), "iat": t, "nbf": t, "jti": str(uuid.uuid4()), "groups": list(groups)}
        if ttl is not None:
            claims["exp"] = t + int(ttl)
        return self._sign(claims)

    def service_account_token(
        self,
        namespace: str,
        name: str,
        uid: str,
        *,
        seconds: int = DEFAULT_SA_SECONDS,
        audiences: Iterable[str] | None = None,
        pod: tuple[str, str] | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A ServiceAccount token as Kubernetes' TokenRequest issues it; (token, exp)."""
        t = int(now if now is not None else time.time())
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if pod is not None:
            k8s["pod"] = {"name": pod[0], "uid": pod[1]}
        exp = t + int(seconds)
        claims = {
            "aud": list(audiences) if audiences else list(self.audiences),
            "exp": exp,
            "iat": t,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            K8S_CLAIM: k8s,
            "nbf": t,
            "sub": f"system:serviceaccount:{namespace}:{name}",
        }
        return self._sign(claims), exp


# -- verifying -------------------------------------------------------------------------


@dataclass
class Verifier:
    """Verifies tokens against the keys in ``files`` (re-read when a file changes)."""

    files: tuple[str, ...]
    issuers: tuple[str, ...] = (DEFAULT_ISSUER,)
    audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)
    recheck_seconds: float = 5.0
    #: verified tokens are remembered this long (Kubernetes caches token authentication
    #: too): a signature check costs more than the rest of a small request
    cache_seconds: float = 10.0
    cache_size: int = 4096
    _cache: OrderedDict[str, tuple[float, UserInfo]] = field(default_factory=OrderedDict)
    _by_file: dict[str, dict[str, ec.EllipticCurvePublicKey]] = field(default_factory=dict)
    _keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    _stamp: dict[str, tuple[float, int]] = field(default_factory=dict)
    _checked: float = 0.0

    def __post_init__(self) -> None:
        self.files = tuple(str(f) for f in self.files)
        self.reload(initial=True)

    def reload(self, *, initial: bool = False) -> None:
        """Re-read the key files that changed. A file that cannot be read keeps the keys it
        had (a rotation half-written is not an outage); at start it is an error."""
        self._checked = time.monotonic()
        for f in self.files:
            try:
                st = os.stat(f)
                stamp = (st.st_mtime, st.st_size)
                if not initial and self._stamp.get(f) == stamp:
                    continue
                self._by_file[f] = {key_id(k): k for k in load_public_keys(f)}
                self._stamp[f] = stamp
            except (OSError, ValueError):
                if initial:
                    raise
        keys = {kid: k for keys in self._by_file.values() for kid, k in keys.items()}
        if set(keys) != set(self._keys):
            self._cache.clear()  # a key went away (or came): verify everything again
        self._keys = keys

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def claims(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        """The verified claims of ``token``, or :class:`InvalidToken`."""
        if time.monotonic() - self._checked > self.recheck_seconds:
            self.reload()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"unexpected signing algorithm {header.get('alg')!r}")
        kid = header.get("kid")
        candidates = [self._keys[kid]] if isinstance(kid, str) and kid in self._keys else ([] if kid else list(self._keys.values()))
        if not candidates:
            raise InvalidToken("signed by an unknown key")
        last: Exception | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    audience=list(self.audiences),
                    leeway=LEEWAY,
                    options={"require": ["iss", "sub", "aud", "iat"], "verify_iss": False},
                )
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.PyJWTError as exc:
                raise InvalidToken(str(exc)) from None
            if claims.get("iss") not in self.issuers:
                raise InvalidToken(f"unknown issuer {claims.get('iss')!r}")
            return claims
        raise InvalidToken(f"bad signature: {last}")

    def authenticate(self, token: str) -> UserInfo:
        """The user a verified token names (remembered for ``cache_seconds``, never past the
        token's own expiry)."""
        if time.monotonic() - self._checked > self.recheck_seconds:
            self.reload()  # a removed key also empties the cache
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(token)
            return hit[1]
        claims = self.claims(token)
        user = user_from_claims(claims)
        exp = claims.get("exp")
        until = now + self.cache_seconds
        if isinstance(exp, int | float):
            until = min(until, float(exp))
        self._cache[token] = (until, user)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return user


def user_from_claims(claims: dict[str, Any]) -> UserInfo:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("no subject")
    jti = claims.get("jti")
    extra: dict[str, tuple[str, ...]] = {CREDENTIAL_ID: (f"JTI={jti}",)} if isinstance(jti, str) and jti else {}
    k8s = claims.get(K8S_CLAIM)
    if k8s is None:
        if parse_service_account(sub) is not None:
            raise InvalidToken("a ServiceAccount name in a user token")
        groups = claims.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise InvalidToken("groups must be a list of strings")
        return UserInfo(sub, groups=with_authenticated(groups), extra=extra)
    if not isinstance(k8s, dict) or not isinstance(k8s.get("serviceaccount"), dict):
        raise InvalidToken(f"malformed {K8S_CLAIM} claim")
    if "exp" not in claims:
        raise InvalidToken("a ServiceAccount token must expire")
    ns, sa = k8s.get("namespace"), k8s["serviceaccount"]
    parsed = parse_service_account(sub)
    if parsed is None or parsed != (ns, sa.get("name")):
        raise InvalidToken("subject and kubernetes.io claim disagree")
    pod = k8s.get("pod")
    if isinstance(pod, dict) and pod.get("name"):
        extra[POD_NAME] = (str(pod["name"]),)
        extra[POD_UID] = (str(pod.get("uid") or ""),)
    return UserInfo(sub, uid=str(sa.get("uid") or ""), groups=service_account_groups(str(ns)), extra=extra)
