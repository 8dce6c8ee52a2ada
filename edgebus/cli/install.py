"""``edgebus cloud start``, ``edgebus cloud install --systemd``, ``edgebus node install
--systemd``: the cloud and the nodes of a multi-host install (docs/install.md)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from edgebus.cli.output import echo, fail

cloud_app = typer.Typer(help="The cloud on a host of its own (a multi-host install).", no_args_is_help=True)

_UNIT_DIR = typer.Option("--unit-dir", help="where to write the unit file")
_DEFAULT_NODE_DIR = str(Path.home() / ".edgebus" / "node")


def _cloud_dir(ctx: typer.Context) -> str:
    from edgebus.lab.cloud import DEFAULT_CLOUD_DIR

    return str(Path(ctx.obj.data_dir or DEFAULT_CLOUD_DIR).absolute())


@cloud_app.command("start")
def cloud_start(
    ctx: typer.Context,
    address: Annotated[str, typer.Option("--address", help="the address (IP or DNS name) nodes and clients reach this host by")] = "127.0.0.1",
    listen: Annotated[str | None, typer.Option("--listen", help="the address the servers listen on (default: --address; 0.0.0.0: every interface)")] = None,
    grace: Annotated[float, typer.Option(help="seconds without a heartbeat before a node is NotReady")] = 40.0,
    devices: Annotated[bool, typer.Option("--devices/--no-devices", help="run devicecontroller")] = True,
    san: Annotated[list[str] | None, typer.Option("--san", help="another name or IP for the server certificate (repeatable)")] = None,
    port_base: Annotated[int | None, typer.Option(help="ports from here instead of the usual ones (NATS 4222, leafnodes 7422, apiserver 6443)")] = None,
    log_level: Annotated[str, typer.Option(help="services' log level")] = "INFO",
) -> None:
    """Run the cloud in the foreground: its NATS hub, apiserver, cloudhub and controllers,
    secure (a PKI made at the first start under <data-dir>/cloud/pki, TLS on every port,
    nodes join with `edgebus token create` tokens)."""
    from edgebus.lab import Lab
    from edgebus.lab.cloud import CloudPlan

    data = Path(_cloud_dir(ctx))
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    plan = CloudPlan(data_dir=str(data), address=address, host=listen or address, grace=grace, devices=devices, extra_hosts=list(san or []), port_base=port_base, log_level=log_level)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s cloud: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every readiness probe
    lab = Lab(plan)

    def ready(_: Lab) -> None:
        echo(f"edgebus cloud is up at {address}: apiserver {plan.apiserver_url}, leafnodes {plan.advertised_leaf_urls[0]}, NATS {plan.cloud_nats_url}")
        echo(f"CA {plan.ca_file}; admin token {plan.cloud_pki_dir / 'admin.token'}")
        echo(f"join a node:  EDGEBUS_LAB_DIR={data} edgebus token create   then on the node's host:  edgebus node join --cloud {address}:{plan.apiserver_port} --token <token> --name <node>")

    try:
        asyncio.run(lab.run(on_ready=ready))
    except RuntimeError as exc:
        fail(str(exc))
    echo("edgebus cloud stopped")


@cloud_app.command("install")
def cloud_install(
    ctx: typer.Context,
    systemd: Annotated[bool, typer.Option("--systemd", help="write a systemd unit (the only kind for now)")] = False,
    address: Annotated[str, typer.Option("--address", help="the address nodes and clients reach this host by")] = "127.0.0.1",
    listen: Annotated[str | None, typer.Option("--listen", help="the address the servers listen on (default: --address)")] = None,
    grace: Annotated[float, typer.Option(help="seconds without a heartbeat before a node is NotReady")] = 40.0,
    devices: Annotated[bool, typer.Option("--devices/--no-devices")] = True,
    san: Annotated[list[str] | None, typer.Option("--san", help="another name or IP for the server certificate")] = None,
    unit_dir: Annotated[str, _UNIT_DIR] = "/etc/systemd/system",
) -> None:
    """Write edgebus-cloud.service: `edgebus cloud start` at boot with these options."""
    from edgebus.deploy.systemd import CLOUD_UNIT, cloud_unit, write_unit

    if not systemd:
        fail("say how to install it: --systemd")
    unit = cloud_unit(data_dir=_cloud_dir(ctx), address=address, listen=listen, grace=grace, devices=devices, extra_hosts=list(san or []))
    path = write_unit(unit, unit_dir, CLOUD_UNIT)
    echo(f"wrote {path}; then: systemctl daemon-reload && systemctl enable --now {CLOUD_UNIT}")


def node_install(
    systemd: Annotated[bool, typer.Option("--systemd", help="write a systemd unit (the only kind for now)")] = False,
    node_dir: Annotated[str, typer.Option("--node-dir", help="the node's data dir (as given to `edgebus node join`)")] = _DEFAULT_NODE_DIR,
    host: Annotated[str, typer.Option(help="address the node's servers listen on")] = "127.0.0.1",
    containerd: Annotated[bool | None, typer.Option("--containerd/--no-containerd", help="run pods (default: when root and containerd is installed)")] = None,
    all_in_one: Annotated[bool, typer.Option("--all-in-one", help="every edge service in one process")] = False,
    heartbeat: Annotated[float, typer.Option(help="seconds between heartbeats")] = 10.0,
    unit_dir: Annotated[str, _UNIT_DIR] = "/etc/systemd/system",
) -> None:
    """Write edgebus-node.service: `edgebus node start` at boot (join the node first)."""
    from edgebus.deploy.systemd import NODE_UNIT, node_unit, write_unit
    from edgebus.identity.node import NodeIdentity

    if not systemd:
        fail("say how to install it: --systemd")
    node_dir = str(Path(node_dir).absolute())
    unit = node_unit(node_dir=node_dir, host=host, containerd=containerd, all_in_one=all_in_one, heartbeat=heartbeat)
    path = write_unit(unit, unit_dir, NODE_UNIT)
    joined = NodeIdentity.at(node_dir).joined
    echo(f"wrote {path}; then: systemctl daemon-reload && systemctl enable --now {NODE_UNIT}")
    if not joined:
        echo(f"note: the node in {node_dir} has not joined yet (`edgebus node join ... --node-dir {node_dir}`); the unit will not start until it has")
