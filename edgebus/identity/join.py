"""The node side of joining and of renewing a credential over HTTPS (the apiserver relays to
cloudhub).

Joining: fetch the cloud's CA bundle (over TLS, but before anything is trusted), check that
it contains the CA the token pins, then talk to the cloud only over connections verified
against that CA, and send the token with the node's *public* keys (its identity nkey and a
certificate request for its link key). Nothing secret ever leaves the node except the token,
and the token only goes to a cloud that proved it holds the pinned CA's certificate.

Renewing after the link certificate expired (the node was offline too long to renew over its
link): a request signed with the node's identity key, which the cloud checks against the key
it recorded at join.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx

from edgebus.identity import pki
from edgebus.identity.node import NodeIdentity
from edgebus.identity.tokens import Token

JOIN_PATH = "/edgebus/v1/join"
RENEW_PATH = "/edgebus/v1/renew"
CA_PATH = "/edgebus/v1/ca"


class JoinError(RuntimeError):
    """A join or renewal the cloud refused, or a cloud that is not the one pinned; the message
    is one line for the user."""


@dataclass
class JoinResult:
    node: str
    answer: dict[str, Any]


def cloud_url(cloud: str) -> str:
    cloud = cloud.strip().rstrip("/")
    return cloud if cloud.startswith(("https://", "http://")) else f"https://{cloud}"


def _unverified_ca(url: str, timeout: float) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        r = httpx.get(url + CA_PATH, verify=ctx, timeout=timeout)
    except httpx.HTTPError as exc:
        raise JoinError(f"cannot reach the cloud at {url}: {exc}") from None
    if r.status_code != 200:
        raise JoinError(f"the cloud at {url} did not serve its CA ({r.status_code}): is this an edgebus apiserver?")
    return r.content


def pinned_context(url: str, pin: str, *, timeout: float = 10.0) -> tuple[ssl.SSLContext, bytes]:
    """An SSL context that trusts the cloud's CA bundle, after checking it holds ``pin``."""
    bundle = _unverified_ca(url, timeout)
    try:
        certs = pki.load_certs(bundle)
    except pki.PkiError:
        raise JoinError(f"the cloud at {url} served no CA certificate") from None
    pins = [pki.spki_sha256(c) for c in certs]
    if pin not in pins:
        raise JoinError(
            f"the cloud at {url} presents CA sha256:{pins[0]}, but the token pins sha256:{pin}: wrong address, or the cloud's CA changed (get a new token)"
        )
    ctx = ssl.create_default_context(cadata=bundle.decode())
    return ctx, bundle


def _post(url: str, path: str, body: dict[str, Any], ctx: ssl.SSLContext, timeout: float) -> dict[str, Any]:
    try:
        r = httpx.post(url + path, json=body, verify=ctx, timeout=timeout)
    except httpx.ConnectError as exc:
        raise JoinError(f"cannot reach the cloud at {url}: {exc}") from None
    except httpx.HTTPError as exc:
        raise JoinError(f"request to the cloud at {url} failed: {exc}") from None
    try:
        doc = r.json()
    except json.JSONDecodeError:
        doc = {}
    if r.status_code != 200:
        raise JoinError(str(doc.get("message") or f"the cloud answered {r.status_code}"))
    return dict(doc)


def join(cloud: str, token: str, node: str, ident: NodeIdentity, *, force: bool = False, labels: dict[str, str] | None = None, timeout: float = 15.0) -> JoinResult:
    """Join the cloud at ``cloud`` (``host:port`` of its apiserver) as ``node``."""
    tok = Token.parse(token)
    if not tok.ca_pin:
        raise JoinError("the token does not pin the cloud's CA: use the full token `edgebus token create` prints")
    url = cloud_url(cloud)
    ctx, _ = pinned_context(url, tok.ca_pin, timeout=timeout)
    key = ident.identity_key()
    link_key = pki.new_key()
    body = {
        "token": tok.bootstrap,
        "node": node,
        "nkey": key.public,
        "csr": pki.new_csr(link_key, node).decode(),
        "force": force,
        "labels": labels or {},
    }
    answer = _post(url, JOIN_PATH, body, ctx, timeout)
    answer.setdefault("apiserver", url)
    ident.save_join(answer, pki.key_pem(link_key))
    return JoinResult(node, answer)


def renewal_proof(node: str, csr_pem: str, t: int, key: Any) -> str:
    msg = hashlib.sha256(f"edgebus-renew\x00{node}\x00{t}\x00{csr_pem}".encode()).digest()
    return base64.b64encode(key.sign(msg)).decode()


def check_renewal_proof(node: str, csr_pem: str, t: int, nkey: str, proof: str) -> bool:
    from edgebus.identity.natsjwt import verify

    msg = hashlib.sha256(f"edgebus-renew\x00{node}\x00{t}\x00{csr_pem}".encode()).digest()
    try:
        sig = base64.b64decode(proof)
    except ValueError:
        return False
    return verify(nkey, msg, sig)


def renew_offline(ident: NodeIdentity, *, timeout: float = 15.0) -> dict[str, Any]:
    """Renew the link certificate over HTTPS, proving possession of the identity key."""
    info = ident.info
    url = str(info["apiserver"])
    ctx = ssl.create_default_context(cafile=str(ident.ca_file))
    link_key = pki.new_key()
    csr = pki.new_csr(link_key, info["node"]).decode()
    t = int(time.time())
    body = {"node": info["node"], "csr": csr, "time": t, "proof": renewal_proof(info["node"], csr, t, ident.identity_key())}
    answer = _post(url, RENEW_PATH, body, ctx, timeout)
    ident.save_link(answer["certificate"].encode(), pki.key_pem(link_key), answer.get("ca", "").encode())
    return answer
