"""The one-shot steps that make a compose lab secure, each its own container run before the
processes that need it (``python -m edgebus.deploy.boot cloud|token|node <node>``):

``cloud``
    The cloud's trust material in its volume (``/data/cloud/pki``: the CA, the server
    certificate for the services' names and loopback, NATS operator and accounts, the
    admin's API token and NATS credentials) and the hub's nats-server config, which names
    them. With ``EDGEBUS_BOOT_HOST_DIR`` (a directory of the host mounted there) it also
    writes what the host's ``edgebus`` and ``kubectl`` need: ``ca.crt``, ``admin.token``,
    ``admin.creds``, a ``kubeconfig`` and a ``lab.json`` (``edgebus --data-dir DIR ...``).
``token``
    Once the apiserver and cloudhub are up: a bootstrap token (an hour, as ``edgebus token
    create``) into the ``bootstrap`` volume, the only thing the cloud hands the nodes.
``node <node>``
    The node's local credentials in its volume, the join with that token when the node has
    no credential yet (the HTTPS exchange of ``edgebus node join``: the token pins the
    cloud's CA), and the node's nats-server config with its link to the cloud.

Every step is idempotent: ``docker compose up`` again keeps the PKI and the nodes' identities.

On Kubernetes (``k8s/``, whose Secrets ``edgebus deploy k8s-secrets`` writes):

``k8s-token``
    The ``bootstrap-token`` Job: registers the token of the ``edgebus-admin`` Secret with the
    admin's credential once the cloud answers (nothing if it is there already).
``k8s-node``
    The edge lab pod's init container: its node is its Kubernetes node (``EDGEBUS_NODE``);
    local credentials, the join with the ``edgebus-join`` token (``--force``: the pod's data
    is an ``emptyDir``, so a restarted pod is a new identity for the same name and the old
    one is revoked), and the node's nats-server config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import yaml

from edgebus.auth.pki import admin_token, ensure_signing_key
from edgebus.auth.tokens import write_secret
from edgebus.deploy.plans import ContainerPlan, container_plan
from edgebus.identity.cloud import CloudPki
from edgebus.identity.files import write_private, write_public
from edgebus.identity.join import JoinError, join
from edgebus.lab.plan import LabPlan, ProcSpec

TOKEN_FILE = "/bootstrap/token"


def _write_config(spec: ProcSpec) -> None:
    text = spec.config()
    assert spec.config_file and text is not None
    Path(spec.config_file).parent.mkdir(parents=True, exist_ok=True)
    Path(spec.config_file).write_text(text)


def cloud(plan: ContainerPlan, host_dir: Path | None = None, *, bind: str = "127.0.0.1", api_port: int = 14202, nats_port: int = 14200) -> None:
    p = plan.cloud_pki()
    signing = ensure_signing_key(p.token_signing_key.parent)
    token_file = plan.cloud_pki_dir / "admin.token"
    if not token_file.exists():
        write_secret(token_file, admin_token(signing.private).encode())
    _write_config(next(s for s in plan.cloud_processes() if s.name == "cloud/nats"))
    if host_dir is not None:
        host_files(p, token_file, host_dir, host="127.0.0.1" if bind in ("0.0.0.0", "") else bind, api_port=api_port, nats_port=nats_port)


def host_files(p: CloudPki, token_file: Path, out: Path, *, host: str, api_port: int, nats_port: int) -> None:
    """What the host's CLI and kubectl need, owned by whoever owns ``out`` (the paths in
    ``lab.json`` are relative to it)."""
    from edgebus.cli.kubeconfig import kubeconfig

    out.mkdir(parents=True, exist_ok=True)
    token = token_file.read_text().strip()
    write_public(out / "ca.crt", p.ca_file.read_bytes())
    write_private(out / "admin.token", token)
    write_private(out / "admin.creds", p.creds_file("admin").read_bytes())
    server = f"https://{host}:{api_port}"
    write_private(out / "kubeconfig", yaml.safe_dump(kubeconfig(server, "edgebus-compose", token=token, ca_pem=p.ca_file.read_bytes()), sort_keys=False))
    state = {
        "data_dir": ".",
        "apiserver": server,
        "cloud_nats": f"nats://{host}:{nats_port}",
        "ready": True,
        "ca_file": "ca.crt",
        "admin_creds": "admin.creds",
        "api_token_file": "admin.token",
        "nodes": {},
    }
    write_private(out / "lab.json", json.dumps(state, indent=2))
    st = out.stat()
    for f in ("ca.crt", "admin.token", "admin.creds", "kubeconfig", "lab.json"):
        os.chown(out / f, st.st_uid, st.st_gid)


def token(plan: ContainerPlan, out: Path = Path(TOKEN_FILE)) -> None:
    from edgebus.lab import create_token

    tok = asyncio.run(create_token(plan, uses=None, ttl=3600.0, description="docker compose"))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_private(out, str(tok))


def node(plan: LabPlan, name: str, token_file: Path = Path(TOKEN_FILE), *, force: bool = False) -> None:
    ident = plan.node_identity(name)
    ident.ensure_local()
    if not ident.joined:
        try:
            join(plan.apiserver_url, token_file.read_text().strip(), name, ident, force=force)
        except (JoinError, OSError) as exc:
            sys.exit(f"node {name} could not join: {exc}")
        print(f"node {name} joined; credential in {ident.dir}")
    _write_config(next(s for s in plan.node_processes(name) if s.name == f"{name}/nats"))


async def k8s_token(token_file: Path = Path("/bootstrap/bootstrap-token.json"), *, pki_dir: Path | None = None, url: str | None = None, retry_for: float = 300.0) -> bool:
    """Register the bootstrap token (its Secret object) in the cluster's cloud; False if it was there."""
    from edgebus.bus import Bus, BusAuth
    from edgebus.deploy import k8s
    from edgebus.errors import AlreadyExists, Conflict
    from edgebus.objects import SECRETS
    from edgebus.objectstore import ObjectStore

    pki_dir = pki_dir or Path(k8s.PKI_ROOT)
    bus = Bus(url or k8s.cluster_plan().cloud_nats_url, name="edgebus-bootstrap-token", auth=BusAuth(creds_file=str(pki_dir / "users" / "admin.creds"), ca_file=str(pki_dir / "ca.crt")))
    await bus.connect(retry_for=retry_for)
    try:
        store = ObjectStore(bus)
        await store.ensure()
        await store.ensure_system_namespaces()
        try:
            await store.create(SECRETS, json.loads(token_file.read_text()))
        except (AlreadyExists, Conflict):
            return False
        return True
    finally:
        await bus.close()


def k8s_node(devices: bool = True) -> None:
    from edgebus.deploy import k8s

    name = os.environ.get("EDGEBUS_NODE", "")
    if not name:
        sys.exit("EDGEBUS_NODE is not set (the pod's spec.nodeName)")
    node(k8s.pod_plan(name, devices=devices), name, Path(TOKEN_FILE), force=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edgebus.deploy.boot", description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=("cloud", "token", "node", "k8s-token", "k8s-node"))
    ap.add_argument("node", nargs="?")
    ap.add_argument("--nodes", type=int, default=int(os.environ.get("EDGEBUS_BOOT_NODES", "2")))
    ap.add_argument("--all-in-one", action="store_true")
    ap.add_argument("--no-devices", action="store_true", help="k8s-node: the lab pod runs no device services")
    a = ap.parse_args(argv)
    if a.step == "k8s-token":
        print("bootstrap token registered" if asyncio.run(k8s_token()) else "bootstrap token already registered")
        return
    if a.step == "k8s-node":
        k8s_node(devices=not a.no_devices)
        return
    plan = container_plan(a.nodes, secure=True, all_in_one=a.all_in_one)
    if a.step == "cloud":
        host = os.environ.get("EDGEBUS_BOOT_HOST_DIR")
        env = os.environ.get
        cloud(plan, Path(host) if host else None, bind=env("EDGEBUS_BOOT_BIND", "127.0.0.1"), api_port=int(env("EDGEBUS_BOOT_API_PORT", "14202")), nats_port=int(env("EDGEBUS_BOOT_NATS_PORT", "14200")))
    elif a.step == "token":
        token(plan)
    else:
        if a.node not in plan.nodes:
            ap.error(f"which node? one of {', '.join(plan.nodes)}")
        node(plan, a.node)


if __name__ == "__main__":
    main()
