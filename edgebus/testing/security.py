"""API credentials for tests and the lab: a token signing key pair, a CA with a serving
certificate for the apiserver's HTTPS listener, tokens, and the settings that use them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebus.auth import Issuer
from edgebus.auth.pki import KeyPair, admin_token, ensure_ca, ensure_serving_cert, ensure_signing_key


@dataclass(frozen=True)
class ApiCredentials:
    signing: KeyPair  # private: sa.key, public: sa.pub
    ca: KeyPair  # private: ca.key, public: ca.crt
    serving: KeyPair  # the apiserver's certificate (127.0.0.1, localhost)
    admin_token: str

    @property
    def ca_pem(self) -> bytes:
        return self.ca.public.read_bytes()

    def issuer(self) -> Issuer:
        return Issuer.from_file(self.signing.private)

    def user_token(self, name: str, *groups: str, ttl: float | None = None) -> str:
        return self.issuer().user_token(name, groups, ttl=ttl)

    def apiserver_settings(self, *, tls: bool = True) -> dict[str, Any]:
        """The ``apiserver`` settings group that turns authentication (and HTTPS) on."""
        out: dict[str, Any] = {"auth": {"token_keys": [str(self.signing.public)]}, "signing_key": str(self.signing.private)}
        if tls:
            out |= {"tls_cert_file": str(self.serving.public), "tls_key_file": str(self.serving.private)}
        return out


def make_credentials(directory: str | Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> ApiCredentials:
    d = Path(directory)
    signing = ensure_signing_key(d / "keys")
    ca = ensure_ca(d / "pki")
    serving = ensure_serving_cert(d / "pki", ca, list(hosts))
    return ApiCredentials(signing, ca, serving, admin_token(signing.private))
