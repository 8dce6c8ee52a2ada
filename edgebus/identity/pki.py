"""X.509 for edgebus: the cluster CA, server certificates, and the nodes' link certificates.

TLS protects every link that can cross hosts (the hub's client and leafnode ports, the
apiserver). A node's *link certificate* is a short-lived TLS client certificate that the
hub's leafnode port requires (nats-server checks the chain and the validity at the TLS
handshake only, so an established link is not dropped when a certificate is replaced).

A CA is pinned by the SHA-256 of its SubjectPublicKeyInfo (as kubeadm's
``--discovery-token-ca-cert-hash``): re-issuing the CA certificate with the same key keeps
every token and node valid. Trust is a *bundle* of CA certificates, so a new CA can be added
before the old one is retired.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from edgebus.identity.files import write_private, write_public  # noqa: F401 - kept importable from here

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class PkiError(ValueError):
    """A certificate, key or request that cannot be used."""


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    k = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(k, ec.EllipticCurvePrivateKey):
        raise PkiError("only EC keys are used")
    return k


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certs(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise PkiError(f"not PEM certificates: {exc}") from None


def spki_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's SubjectPublicKeyInfo (what a token pins)."""
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _sans(hosts: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


@dataclass
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = "edgebus-ca", days: int = 3650) -> CA:
        key = new_key()
        subj = _name(name)
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subj)
            .issuer_name(subj)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_file: str | Path, key_file: str | Path) -> CA:
        certs = load_certs(Path(cert_file).read_bytes())
        return cls(certs[0], load_key(Path(key_file).read_bytes()))

    @property
    def pin(self) -> str:
        return spki_sha256(self.cert)

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        cn: str,
        *,
        org: str | None = None,
        server: bool = False,
        client: bool = False,
        hosts: Iterable[str] = (),
        lifetime: dt.timedelta = dt.timedelta(days=365),
    ) -> x509.Certificate:
        now = _now()
        ekus = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans = _sans(hosts)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(self.key, hashes.SHA256())

    def issue_for_csr(self, csr_pem: bytes, *, cn: str, client: bool = True, lifetime: dt.timedelta) -> x509.Certificate:
        """A certificate for the key of a signed request; the subject is ``cn``, whatever the
        request asks for (the caller decides who it is)."""
        csr = load_csr(csr_pem)
        pub = csr.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            raise PkiError("the request's key must be an EC key")
        return self.issue(pub, cn, client=client, lifetime=lifetime)


def new_csr(key: ec.EllipticCurvePrivateKey, cn: str) -> bytes:
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(cn)).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate request: {exc}") from None
    if not csr.is_signature_valid:
        raise PkiError("the certificate request's signature does not verify")
    return csr


def issued_by(cert: x509.Certificate, bundle: Iterable[x509.Certificate]) -> bool:
    """True if one of the CAs of ``bundle`` signed ``cert`` (validity dates not checked)."""
    for ca in bundle:
        if ca.subject != cert.issuer:
            continue
        pub = ca.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            continue
        try:
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))  # type: ignore[arg-type]
            return True
        except InvalidSignature:
            continue
    return False


def not_after(cert: x509.Certificate) -> dt.datetime:
    return cert.not_valid_after_utc
