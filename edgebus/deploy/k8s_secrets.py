"""``edgebus deploy k8s-secrets``: the Secrets the Kubernetes manifests (``k8s/``) name.

``k8s/`` is rendered from the plan and committed; it holds no secret. This command makes the
cloud's trust material in a directory the operator keeps (``--dir``, default
``.edgebus-k8s``; the same layout as a lab's: ``cloud/pki``), idempotently, and writes the
Secret manifests from it (``kubectl apply -f``; never commit them):

``edgebus-nats``
    the cloud servers' config (operator, accounts, resolver, TLS on the client, leafnode and
    route ports) with the CA and the server certificate and key it names;
``edgebus-<service>-pki``
    each cloud service's own files only: its NATS credential and the CA (the apiserver also
    its serving certificate and its token keys; cloudhub, the identity authority, the CA's key
    and the NATS signing keys);
``edgebus-admin``
    the admin's NATS credential and the bootstrap token to register (the ``bootstrap-token``
    Job, once the cloud is up);
``edgebus-join``
    that token, with which the lab's edge pods join (the token pins the CA).

Why a command and not an init Job that makes the PKI in the cluster: the CA key and the
signing keys then exist once, where the operator chose (as ``edgebus up`` keeps them in the
lab's directory), rotation and backup are the operator's files, and no pod needs the
Kubernetes API's permission to create Secrets.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from edgebus.auth.pki import admin_token, ensure_signing_key
from edgebus.auth.tokens import write_secret
from edgebus.deploy import k8s
from edgebus.deploy.plans import module_of
from edgebus.identity.cloud import CloudPki
from edgebus.identity.files import write_private
from edgebus.identity.tokens import Token, secret_object
from edgebus.natsd import ServerTls

DEFAULT_DIR = ".edgebus-k8s"
TOKEN_FILE = "bootstrap-token.json"


def _secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": k8s._meta(name), "type": "Opaque", "stringData": dict(sorted(data.items()))}


def ensure_pki(root: Path) -> CloudPki:
    """The cloud's PKI under ``root/cloud/pki`` (made once), with the apiserver's token keys
    and an admin API token beside (``admin.token``)."""
    p = k8s.cluster_plan(str(root)).cloud_pki()
    signing = ensure_signing_key(p.token_signing_key.parent)
    token_file = root / "admin.token"
    if not token_file.exists():
        write_secret(token_file, admin_token(signing.private).encode())
    return p


def bootstrap_token(root: Path, p: CloudPki, *, ttl: dt.timedelta | None) -> tuple[Token, dict[str, Any]]:
    """The token the lab's edge pods join with: kept in ``root`` and reused while valid."""
    f = root / TOKEN_FILE
    if f.exists():
        doc = json.loads(f.read_text())
        exp = doc["object"].get("data", {}).get("expiration")
        tok = Token.parse(doc["token"])
        if tok.ca_pin == p.info["caPin"] and (exp is None or _unexpired(exp)):
            return tok, doc["object"]
    tok = Token.new(p.info["caPin"])
    obj = secret_object(tok, ttl=ttl, uses=None, description="the Kubernetes edge lab (edgebus deploy k8s-secrets)")
    write_private(f, json.dumps({"token": str(tok), "object": obj}))
    return tok, obj


def _unexpired(b64: str) -> bool:
    import base64

    try:
        when = dt.datetime.fromisoformat(base64.b64decode(b64).decode().replace("Z", "+00:00"))
    except ValueError:
        return False
    return when - dt.datetime.now(dt.UTC) > dt.timedelta(hours=1)


def render(root: Path, *, token_ttl: dt.timedelta | None = dt.timedelta(hours=24)) -> list[dict[str, Any]]:
    """The Secret manifests, from the PKI in ``root`` (made there when missing)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    p = ensure_pki(root)

    def read(rel: str) -> str:
        return (p.dir / rel).read_text()

    auth = p.hub_auth(k8s.RESOLVER_DIR)
    auth.tls = ServerTls(f"{k8s.PKI_ROOT}/server.crt", f"{k8s.PKI_ROOT}/server.key", f"{k8s.PKI_ROOT}/ca.crt")
    out = [_secret(k8s.NATS_SECRET, {"nats.conf": k8s.hub_config(auth).render(), **{f: read(f) for f in ("ca.crt", "server.crt", "server.key")}})]
    for spec in k8s.cluster_plan().cloud_processes():
        mod, files = module_of(spec), k8s.pki_files(spec)
        if mod and files:
            out.append(_secret(k8s.service_secret(mod.removeprefix("services.")), {k8s.secret_key(f): read(f) for f in files}))
    tok, obj = bootstrap_token(root, p, ttl=token_ttl)
    out.append(_secret(k8s.ADMIN_SECRET, {"ca.crt": read("ca.crt"), k8s.secret_key("users/admin.creds"): read("users/admin.creds"), "bootstrap-token.json": json.dumps(obj)}))
    out.append(_secret(k8s.JOIN_SECRET, {"token": str(tok)}))
    return out


def write(root: Path, out: Path, *, token_ttl: dt.timedelta | None = dt.timedelta(hours=24)) -> Path:
    from edgebus.deploy.render import _dump

    write_private(out, "# Secrets of the edgebus Kubernetes manifests: apply, never commit.\n" + _dump(render(root, token_ttl=token_ttl)))
    return out
