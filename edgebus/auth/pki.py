"""Files an operator (or the lab) needs to turn API security on: the token signing key
pair, an admin token, a CA and the apiserver's serving certificate.

* :func:`ensure_signing_key` - ``sa.key`` (P-256, 0600) and ``sa.pub`` in a directory; the
  apiserver signs with the first and verifies with the second (add the next key's public
  half to the verification files before switching the signing key: that is a rotation);
* :func:`admin_token` - a token for ``edgebus-admin`` in ``system:masters``;
* :func:`ensure_ca` / :func:`ensure_serving_cert` - a self-signed CA and a server
  certificate for the HTTPS listener, for a ``certificate-authority-data`` in kubeconfigs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgebus.auth.tokens import Issuer, generate_key_pair, write_secret
from edgebus.auth.user import ADMIN_USER, MASTERS

SIGNING_KEY = "sa.key"
VERIFY_KEY = "sa.pub"


@dataclass(frozen=True, slots=True)
class KeyPair:
    private: Path
    public: Path


def ensure_signing_key(directory: str | Path) -> KeyPair:
    d = Path(directory)
    kp = KeyPair(d / SIGNING_KEY, d / VERIFY_KEY)
    if not kp.private.exists() or not kp.public.exists():
        generate_key_pair(kp.private, kp.public)
    return kp


def admin_token(signing_key: str | Path, *, ttl: float | None = None, issuer: Issuer | None = None) -> str:
    """A bearer token for ``edgebus-admin`` (group ``system:masters``)."""
    iss = issuer or Issuer.from_file(signing_key)
    return iss.user_token(ADMIN_USER, [MASTERS], ttl=ttl)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    write_secret(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def ensure_ca(directory: str | Path, name: str = "edgebus-ca", days: int = 3650) -> KeyPair:
    """``ca.crt`` / ``ca.key`` in ``directory`` (created once)."""
    d = Path(directory)
    kp = KeyPair(d / "ca.key", d / "ca.crt")
    if kp.private.exists() and kp.public.exists():
        return kp
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(kp.private, key)
    kp.public.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return kp


def ensure_serving_cert(directory: str | Path, ca: KeyPair, hosts: list[str], name: str = "apiserver", days: int = 365) -> KeyPair:
    """``<name>.crt`` / ``<name>.key`` signed by ``ca`` for ``hosts`` (DNS names or IPs)."""
    d = Path(directory)
    kp = KeyPair(d / f"{name}.key", d / f"{name}.crt")
    if kp.private.exists() and kp.public.exists():
        return kp
    ca_key = serialization.load_pem_private_key(ca.private.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.public.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    _write_key(kp.private, key)
    kp.public.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return kp
