"""``edgebus kubeconfig``: a kubeconfig for kubectl against the cloud apiserver, or against
one node's metaserver (which answers from the node's store, also while it is offline)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from edgebus.cli.client import api_credentials, lab_dir, server_url
from edgebus.cli.output import fail
from edgebus.lab import load_state


def kubeconfig(server: str, name: str, namespace: str = "default", *, token: str | None = None, ca_pem: bytes | None = None) -> dict[str, Any]:
    """A kubeconfig for ``server``; with a bearer ``token`` and the CA (PEM) that signed the
    server's certificate when given."""
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token} if token else {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
        return None


def render(server: str | None, data_dir: str | None, node: str | None) -> str:
    """The kubeconfig, with the credential and CA the lab names in ``lab.json`` (the admin
    token and the apiserver's CA; for a node, its local admin token and the metaserver's CA)."""
    if node is None:
        token, ca = api_credentials(data_dir)
        return yaml.safe_dump(kubeconfig(server_url(server, data_dir), "edgebus", token=token, ca_pem=_read(ca)), sort_keys=False)
    st = load_state(lab_dir(data_dir))
    info = (st or {}).get("nodes", {}).get(node)
    if not info or not info.get("metaserver"):
        fail(f"no metaserver address known for node {node!r}; give --server http://<node>:10550 instead")
    url = server or info["metaserver"]
    raw = _read(info.get("admin_token_file"))
    token = raw.decode().strip() if raw else None
    return yaml.safe_dump(kubeconfig(url, f"edgebus-{node}", token=token, ca_pem=_read(info.get("metaserver_ca_file"))), sort_keys=False)
