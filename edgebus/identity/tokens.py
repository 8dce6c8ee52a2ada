"""Bootstrap tokens: what a new node joins with.

A token as printed is ``<ca pin>.<id>.<secret>``: the SHA-256 (hex) of the cloud CA's public
key, so the node can check it talks to the right cloud before it sends anything secret, then
kubeadm's ``<6-char id>.<16-char secret>``. The cloud keeps each token as a Secret of type
``bootstrap.kubernetes.io/token`` named ``bootstrap-token-<id>`` in ``kube-system`` (the
layout kubeadm uses: ``token-id``, ``token-secret``, ``expiration``, ``description``,
``usage-bootstrap-authentication``), plus ``edgebus-uses-remaining`` when the token may only
be used a number of times. Deleting the Secret revokes the token.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

NAMESPACE = "kube-system"
SECRET_TYPE = "bootstrap.kubernetes.io/token"
SECRET_PREFIX = "bootstrap-token-"
USES_KEY = "edgebus-uses-remaining"
_ALPHABET = string.ascii_lowercase + string.digits
_ID = re.compile(r"^[a-z0-9]{6}$")
_SECRET = re.compile(r"^[a-z0-9]{16}$")
_PIN = re.compile(r"^[0-9a-f]{64}$")


class TokenError(ValueError):
    """A token that cannot be used; the message is what the user sees."""


@dataclass(frozen=True)
class Token:
    id: str
    secret: str
    ca_pin: str = ""

    @classmethod
    def new(cls, ca_pin: str) -> Token:
        return cls("".join(secrets.choice(_ALPHABET) for _ in range(6)), "".join(secrets.choice(_ALPHABET) for _ in range(16)), ca_pin)

    @classmethod
    def parse(cls, text: str) -> Token:
        parts = text.strip().split(".")
        if len(parts) == 3 and _PIN.fullmatch(parts[0]) and _ID.fullmatch(parts[1]) and _SECRET.fullmatch(parts[2]):
            return cls(parts[1], parts[2], parts[0])
        if len(parts) == 2 and _ID.fullmatch(parts[0]) and _SECRET.fullmatch(parts[1]):
            return cls(parts[0], parts[1])
        raise TokenError("malformed token: expected <ca sha256>.<id>.<secret> as `edgebus token create` prints it")

    @property
    def bootstrap(self) -> str:
        """``<id>.<secret>`` (what is sent to the cloud)."""
        return f"{self.id}.{self.secret}"

    def __str__(self) -> str:
        return f"{self.ca_pin}.{self.id}.{self.secret}" if self.ca_pin else self.bootstrap

    def secret_name(self) -> str:
        return SECRET_PREFIX + self.id


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: Any) -> str:
    try:
        return base64.b64decode(str(s)).decode()
    except Exception:
        return ""


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def secret_object(token: Token, *, ttl: dt.timedelta | None, uses: int | None, description: str = "", now: dt.datetime | None = None) -> dict[str, Any]:
    """The Secret that stores ``token`` in the cloud."""
    data = {"token-id": token.id, "token-secret": token.secret, "usage-bootstrap-authentication": "true", "description": description or "edgebus node join"}
    if ttl is not None:
        data["expiration"] = rfc3339((now or dt.datetime.now(dt.UTC)) + ttl)
    if uses is not None:
        data[USES_KEY] = str(int(uses))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {"name": token.secret_name(), "namespace": NAMESPACE, "labels": {"edgebus.io/bootstrap-token": "true"}},
        "data": {k: _b64(v) for k, v in data.items()},
    }


@dataclass(frozen=True)
class StoredToken:
    id: str
    secret: str
    expires: dt.datetime | None
    uses: int | None
    description: str

    @classmethod
    def from_secret(cls, obj: dict[str, Any]) -> StoredToken | None:
        if obj.get("type") != SECRET_TYPE:
            return None
        d = {k: _unb64(v) for k, v in (obj.get("data") or {}).items()}
        if not _ID.fullmatch(d.get("token-id", "")) or not d.get("token-secret"):
            return None
        exp = None
        if d.get("expiration"):
            try:
                exp = dt.datetime.fromisoformat(d["expiration"].replace("Z", "+00:00"))
            except ValueError:
                exp = dt.datetime.min.replace(tzinfo=dt.UTC)  # unreadable: treat as expired
        uses = None
        if d.get(USES_KEY, "") != "":
            try:
                uses = int(d[USES_KEY])
            except ValueError:
                uses = 0
        return cls(d["token-id"], d["token-secret"], exp, uses, d.get("description", ""))

    def check(self, secret: str, now: dt.datetime | None = None) -> None:
        """Raise :class:`TokenError` unless this token may be used now with ``secret``."""
        if not hmac.compare_digest(self.secret.encode(), secret.encode()):
            raise TokenError(f"invalid bootstrap token {self.id}: unknown, revoked or wrong secret")
        t = now or dt.datetime.now(dt.UTC)
        if self.expires is not None and t >= self.expires:
            raise TokenError(f"bootstrap token {self.id} expired at {rfc3339(self.expires)}; create a new one with `edgebus token create`")
        if self.uses is not None and self.uses <= 0:
            raise TokenError(f"bootstrap token {self.id} has no uses left; create a new one with `edgebus token create`")


def consume(obj: dict[str, Any]) -> dict[str, Any]:
    """The Secret after one more use of its token (unchanged when uses are unlimited)."""
    d = obj.setdefault("data", {})
    if USES_KEY in d:
        d[USES_KEY] = _b64(str(max(int(_unb64(d[USES_KEY]) or 0) - 1, 0)))
    return obj
