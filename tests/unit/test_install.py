"""The multi-host install: the cloud's plan on a host of its own, and the systemd units
`edgebus cloud|node install --systemd` write (they must parse as units and run a command the
CLI accepts)."""

from __future__ import annotations

import configparser
import json
import shlex
from pathlib import Path

import pytest
import typer
from cryptography import x509
from typer.testing import CliRunner

from edgebus.cli.main import app
from edgebus.deploy.systemd import cloud_unit, node_unit
from edgebus.lab import WORKLOAD_CONTROLLERS
from edgebus.lab.cloud import CloudPlan

runner = CliRunner()


def parse_unit(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)
    return cp


def cli_parse(argv: list[str]) -> dict[str, object]:
    """Parse ``argv`` (after the program) with the real CLI, down to the leaf command, without
    running it; returns the leaf command's parameters. A bad option raises."""
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("edgebus", list(argv))
    while hasattr(cmd, "resolve_command"):  # a group: the next word names the subcommand
        args = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []), *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, args)
        assert sub is not None, name
        cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return {**ctx.params, "_command": ctx.command_path}


def exec_start(text: str) -> list[str]:
    return shlex.split(parse_unit(text)["Service"]["ExecStart"])


def test_cloud_unit_runs_cloud_start_with_its_options(tmp_path: Path) -> None:
    text = cloud_unit(data_dir=str(tmp_path / "cloud"), address="cloud.example", listen="0.0.0.0", grace=20, extra_hosts=["10.0.0.5"]).render()
    unit = parse_unit(text)
    svc = unit["Service"]
    assert svc["KillMode"] == "mixed" and svc["Restart"] == "always" and int(svc["TimeoutStopSec"]) >= 60
    assert unit["Install"]["WantedBy"] == "multi-user.target" and "network-online.target" in unit["Unit"]["After"]
    argv = exec_start(text)
    assert Path(argv[0]).name in ("edgebus", "python", "python3") or argv[1:3] == ["-m", "edgebus.cli.main"]
    rest = argv[1:] if Path(argv[0]).name == "edgebus" else argv[3:]
    params = cli_parse(rest)
    assert params["_command"] == "edgebus cloud start"
    assert (params["address"], params["listen"], params["grace"], params["san"]) == ("cloud.example", "0.0.0.0", 20.0, ["10.0.0.5"])
    assert rest[:2] == ["--data-dir", str(tmp_path / "cloud")]
    assert f"EDGEBUS_LAB_DIR={tmp_path / 'cloud'}" in shlex.split(svc["Environment"])


def test_node_unit_waits_for_the_join_and_delegates_cgroups(tmp_path: Path) -> None:
    nd = tmp_path / "node"
    text = node_unit(node_dir=str(nd), host="0.0.0.0", containerd=True, all_in_one=True, heartbeat=3).render()
    unit = parse_unit(text)
    assert unit["Unit"]["ConditionPathExists"] == str(nd / "identity" / "node.creds")
    assert unit["Service"]["Delegate"] == "yes" and unit["Service"]["KillMode"] == "mixed"
    argv = exec_start(text)
    params = cli_parse(argv[1:] if Path(argv[0]).name == "edgebus" else argv[3:])
    assert params["_command"] == "edgebus node start"
    assert (params["node_dir"], params["host"], params["containerd"], params["all_in_one"], params["heartbeat"]) == (str(nd), "0.0.0.0", True, True, 3.0)


def test_install_commands_write_the_units(tmp_path: Path) -> None:
    units = tmp_path / "units"
    r = runner.invoke(app, ["--data-dir", str(tmp_path / "c"), "cloud", "install", "--systemd", "--unit-dir", str(units), "--address", "10.9.0.1"])
    assert r.exit_code == 0, r.output
    cloud = (units / "edgebus-cloud.service").read_text()
    assert "--address 10.9.0.1" in parse_unit(cloud)["Service"]["ExecStart"]
    assert (units / "edgebus-cloud.service").stat().st_mode & 0o777 == 0o644
    r = runner.invoke(app, ["node", "install", "--systemd", "--unit-dir", str(units), "--node-dir", str(tmp_path / "n"), "--no-containerd"])
    assert r.exit_code == 0, r.output
    assert "has not joined yet" in r.output
    assert "--no-containerd" in exec_start((units / "edgebus-node.service").read_text())
    r = runner.invoke(app, ["node", "install", "--unit-dir", str(units)])
    assert r.exit_code != 0 and "--systemd" in r.output


def test_cloud_plan_advertises_its_address_and_keeps_ops_on_loopback(tmp_path: Path) -> None:
    plan = CloudPlan(data_dir=str(tmp_path), address="10.9.0.1", host="0.0.0.0", extra_hosts=["cloud.example"])
    assert plan.nodes == [] and not plan.use_containerd
    plan.prepare()
    procs = {p.name: p for p in plan.processes()}
    services = {"apiserver", "cloudhub", "edgecontroller", "endpointcontroller", "devicecontroller", "scheduler", *WORKLOAD_CONTROLLERS}
    assert set(procs) == {"cloud/nats", *(f"cloud/{s}" for s in services)}
    ops = [plan.cloud_ops_port(s) for s in services - {"apiserver"}]
    assert len(set(ops)) == len(ops) and min(ops) >= 10351, "each service its own ops port"
    hub = procs["cloud/cloudhub"].env
    assert json.loads(hub["EDGEBUS_CLOUDHUB__LEAF_URLS"]) == ["nats-leaf://10.9.0.1:7422"]
    assert hub["EDGEBUS_NATS__URL"] == "nats://10.9.0.1:4222" and hub["EDGEBUS_CLOUDHUB__APISERVER_URL"] == "https://10.9.0.1:6443"
    assert hub["EDGEBUS_OPS__HOST"] == "127.0.0.1" and procs["cloud/cloudhub"].ready_url == f"http://127.0.0.1:{plan.cloud_ops_port('cloudhub')}/readyz"
    api = procs["cloud/apiserver"]
    assert (api.env["EDGEBUS_APISERVER__HOST"], api.env["EDGEBUS_APISERVER__PORT"]) == ("0.0.0.0", "6443")
    assert api.ready_url == "https://10.9.0.1:6443/readyz"
    conf = procs["cloud/nats"].config() or ""
    assert '"0.0.0.0:7422"' in conf or "0.0.0.0:7422" in conf
    cert = x509.load_pem_x509_certificate(plan.cloud_pki().server_cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))
    assert {"10.9.0.1", "cloud.example", "127.0.0.1", "localhost"} <= names and "0.0.0.0" not in names


@pytest.mark.parametrize("port_base", [None, 24000])
def test_cloud_ports(tmp_path: Path, port_base: int | None) -> None:
    plan = CloudPlan(data_dir=str(tmp_path), address="127.0.0.1", port_base=port_base)
    got = (plan.cloud_nats_port, plan.cloud_leaf_port, plan.apiserver_port)
    assert got == ((4222, 7422, 6443) if port_base is None else (24000, 24001, 24002))
    assert len(set(plan.all_ports())) == len(plan.all_ports())
