"""``edgebus``: run the lab and manage objects, nodes and devices like kubectl."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

import edgebus
from edgebus.cli import devices as device_cmds
from edgebus.cli import identity as identity_cmds
from edgebus.cli import install as install_cmds
from edgebus.cli import inspect as inspect_cmds
from edgebus.cli import pods as pods_cmds
from edgebus.cli import resources
from edgebus.cli.client import Api, api_client, cloud_bus, lab_dir
from edgebus.cli.output import dump, echo, fail, table
from edgebus.lab import DEFAULT_BASE_PORT, Lab, LabPlan, control, load_state

app = typer.Typer(help="edgebus: Kubernetes-style edge computing over NATS.", no_args_is_help=True, add_completion=False)
node_app = typer.Typer(help="Edge nodes: their local store, and (in the lab) stop/start.", no_args_is_help=True)
app.add_typer(node_app, name="node")
app.add_typer(inspect_cmds.inspect_app, name="inspect")
app.add_typer(device_cmds.app, name="device")
app.add_typer(identity_cmds.token_app, name="token")
node_app.command("join")(identity_cmds.node_join)
node_app.command("revoke")(identity_cmds.node_revoke)
node_app.command("install")(install_cmds.node_install)
app.add_typer(install_cmds.cloud_app, name="cloud")
pods_cmds.register(app)  # logs, exec, image load


@dataclass
class Opts:
    server: str | None
    nats: str | None
    data_dir: str | None

    def api(self) -> Api:
        return api_client(self.server, self.data_dir)


@app.callback()
def _global(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option("--server", "-s", help="apiserver URL (default: the running lab's)", envvar="EDGEBUS_SERVER")] = None,
    nats: Annotated[str | None, typer.Option("--nats", help="cloud NATS URL (default: the running lab's)", envvar="EDGEBUS_CLOUD_NATS")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="lab data dir", envvar="EDGEBUS_LAB_DIR")] = None,
) -> None:
    ctx.obj = Opts(server, nats, data_dir)


# -- lab ------------------------------------------------------------------------------


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _print_endpoints(st: dict[str, Any]) -> None:
    echo("edgebus lab is up")
    echo(f"  apiserver     {st['apiserver']}")
    if st.get("console"):
        token = f"  (sign in with the token in {st['api_token_file']})" if st.get("api_token_file") else ""
        echo(f"  console       {st['console']}{token}")
    echo(f"  cloud NATS    {st['cloud_nats']}   (JetStream domain: cloud)")
    for n, info in st["nodes"].items():
        echo(f"  {n:<13} NATS {info['nats']}  MQTT {info['mqtt']}  (domain: {info['domain']})")
        if info.get("dns"):
            echo(f"  {'':<13} edgemesh DNS {info['dns']}  (dig -p {info['dns'].rsplit(':', 1)[1]} @{info['dns'].rsplit(':', 1)[0]} web.default.svc.cluster.local)")
        if info.get("modbus_sim"):
            echo(f"  {'':<13} simulated Modbus thermostat at {info['modbus_sim']}  (edgebus apply -f examples/thermostat.yaml; edgebus get devices)")
    echo(f"  logs          {Path(st['data_dir']) / 'logs'}")
    echo("try:  edgebus get nodes   |   edgebus apply -f examples/hello.yaml   |   edgebus node objects edge-1")


@app.command()
def up(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=20, help="number of edge nodes (edge-1..edge-N)")] = 2,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="run in the background; stop with `edgebus down`")] = False,
    base_port: Annotated[int, typer.Option(help="first of the loopback ports the lab uses")] = DEFAULT_BASE_PORT,
    grace: Annotated[float, typer.Option(help="seconds without heartbeat before a node is NotReady")] = 40.0,
    heartbeat: Annotated[float, typer.Option(help="seconds between node heartbeats")] = 10.0,
    fresh: Annotated[bool, typer.Option(help="wipe the lab's data dir first")] = False,
    log_level: Annotated[str, typer.Option(help="services' log level")] = "INFO",
    all_in_one: Annotated[bool, typer.Option("--all-in-one", help="run every edge service of a node in one process")] = False,
    cloud_servers: Annotated[int, typer.Option("--cloud-servers", min=1, max=5, help="nats-servers of the cloud (3: a cluster, JetStream R3)")] = 1,
) -> None:
    """Start the lab: a cloud and N edge nodes, every module its own process (or, with
    --all-in-one, every edge service of a node in one)."""
    opts: Opts = ctx.obj
    data = lab_dir(opts.data_dir)
    st = load_state(data)
    if st and _pid_alive(st.get("supervisor_pid")):
        fail(f"a lab is already running from {data} (pid {st['supervisor_pid']}); `edgebus down` first")
    if fresh and data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    plan = LabPlan(
        data_dir=str(data),
        nodes=[f"edge-{i}" for i in range(1, nodes + 1)],
        base_port=base_port,
        grace=grace,
        heartbeat=heartbeat,
        log_level=log_level,
        all_in_one=all_in_one,
        cloud_servers=cloud_servers,
    )
    if detach:
        argv = [sys.executable, "-m", "edgebus.cli.main", "--data-dir", str(data), "up", "--nodes", str(nodes), "--base-port", str(base_port), "--grace", str(grace), "--heartbeat", str(heartbeat), "--log-level", log_level]
        argv += ["--all-in-one"] if all_in_one else []
        argv += ["--cloud-servers", str(cloud_servers)]
        with open(data / "supervisor.log", "ab") as logf:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                fail(f"the lab failed to start; see {data / 'supervisor.log'}")
            st = load_state(data)
            if st and st.get("ready"):
                _print_endpoints(st)
                echo(f"running in the background (pid {proc.pid}); stop with: edgebus down")
                return
            time.sleep(0.2)
        fail(f"the lab did not become ready in 120s; see {data / 'supervisor.log'}")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s lab: %(message)s", datefmt="%H:%M:%S")
    lab = Lab(plan)

    def ready(lab_: Lab) -> None:
        _print_endpoints(json.loads((data / "lab.json").read_text()))
        echo("press Ctrl-C to stop")

    try:
        asyncio.run(lab.run(on_ready=ready))
    except RuntimeError as exc:
        fail(str(exc))
    echo("edgebus lab stopped")


@app.command()
def down(ctx: typer.Context) -> None:
    """Stop the lab started with `edgebus up --detach`."""
    data = lab_dir(ctx.obj.data_dir)
    st = load_state(data)
    if not st or not _pid_alive(st.get("supervisor_pid")):
        echo("no lab is running")
        return
    pid = st["supervisor_pid"]
    try:
        control(data, "down")
    except OSError:
        os.kill(pid, 15)
    deadline = time.monotonic() + 60
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    echo("edgebus lab stopped" if not _pid_alive(pid) else f"the lab (pid {pid}) is still stopping")


@app.command()
def status(ctx: typer.Context, output: Annotated[str | None, typer.Option("-o", help="json")] = None) -> None:
    """The lab's processes."""
    data = lab_dir(ctx.obj.data_dir)
    st = load_state(data)
    if not st or not _pid_alive(st.get("supervisor_pid")):
        fail("no lab is running")
    st = control(data, "status").get("state", st)
    if output == "json":
        echo(json.dumps(st, indent=2))
        return
    rows = [[p["name"], "Running" if p["running"] else ("Stopped" if not p["wanted"] else "Restarting"), str(p["pid"] or "-"), str(p["restarts"]), p["log"]] for p in st["processes"]]
    echo(table(["PROCESS", "STATE", "PID", "RESTARTS", "LOG"], rows))


@node_app.command("stop")
def node_stop(ctx: typer.Context, node: str) -> None:
    """Stop every process of an edge node in the lab (its NATS server included)."""
    r = control(lab_dir(ctx.obj.data_dir), "stop-node", node=node)
    if not r.get("ok"):
        fail(r.get("error", "failed"))
    echo(f"node {node} stopped")


@node_app.command("start")
def node_start(
    ctx: typer.Context,
    node: Annotated[str | None, typer.Argument(help="a node of the running lab (omit: run this host's node, see --node-dir)")] = None,
    node_dir: Annotated[str, typer.Option("--node-dir", help="this host's node data dir (as given to `edgebus node join`)")] = str(Path.home() / ".edgebus" / "node"),
    host: Annotated[str, typer.Option(help="address the node's servers listen on")] = "127.0.0.1",
    containerd: Annotated[bool | None, typer.Option("--containerd/--no-containerd", help="run pods (default: when root and containerd is installed)")] = None,
    port_base: Annotated[int | None, typer.Option(help="ports from here instead of the usual ones (NATS 4222, MQTT 1883, metaserver 10550, ...)")] = None,
    all_in_one: Annotated[bool, typer.Option("--all-in-one", help="every edge service in one process beside the node's nats-server (small devices)")] = False,
    heartbeat: Annotated[float, typer.Option(help="seconds between heartbeats to the cloud")] = 10.0,
) -> None:
    """Start an edge node: one of the lab's again, or this host's joined node (in the foreground)."""
    if node is not None:
        r = control(lab_dir(ctx.obj.data_dir), "start-node", node=node)
        if not r.get("ok"):
            fail(r.get("error", "failed"))
        echo(f"node {node} started")
        return
    from edgebus.identity.node import NotJoined
    from edgebus.lab.node import NodePlan

    try:
        plan = NodePlan(data_dir=node_dir, node_dir=node_dir, host=host, containerd=containerd, port_base=port_base, all_in_one=all_in_one, heartbeat=heartbeat)
    except NotJoined as exc:
        fail(str(exc))
    if all_in_one:
        from edgebus.lab.node import exec_all_in_one

        name = plan.nodes[0]
        echo(f"node {name}: all in one process; NATS nats://{host}:{plan.node_nats_port(name)}, MQTT {host}:{plan.node_mqtt_port(name)}, metaserver {host}:{plan.metaserver_port(name)}")
        echo(f"logs in {plan._dir('logs', name)}; Ctrl-C stops it")
        exec_all_in_one(plan)  # does not return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s node: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every readiness probe
    lab = Lab(plan)
    name = plan.nodes[0]

    def ready(_: Lab) -> None:
        echo(f"node {name} is up: NATS nats://{host}:{plan.node_nats_port(name)}, MQTT {host}:{plan.node_mqtt_port(name)}, metaserver {host}:{plan.metaserver_port(name)}")
        echo(f"linked to {plan.leaf_urls.get(name)}; logs in {plan._dir('logs', name)}; Ctrl-C stops it")

    try:
        asyncio.run(lab.run(on_ready=ready))
    except RuntimeError as exc:
        fail(str(exc))


# -- node's local store -----------------------------------------------------------------


async def _meta(ctx: typer.Context, node: str, op: str, **kw: Any) -> Any:
    from edgebus.metaclient import MetaClient

    bus = cloud_bus(ctx.obj.nats, ctx.obj.data_dir, request_timeout=5)
    await bus.connect(retry_for=5)
    try:
        mc = MetaClient(bus, node)
        return await getattr(mc, op)(**kw)
    finally:
        await bus.close()


@node_app.command("objects")
def node_objects(
    ctx: typer.Context,
    node: str,
    resource: Annotated[str | None, typer.Option("--resource", "-r", help="only this resource (e.g. pods)")] = None,
    output: Annotated[str | None, typer.Option("-o", help="json|yaml")] = None,
) -> None:
    """List the objects in a node's local store (answered by that node's metamanager)."""
    from edgebus.errors import ApiError as LibApiError
    from edgebus.objects import by_lmdb_key

    try:
        res = asyncio.run(_meta(ctx, node, "list", resource=resource))
    except LibApiError as exc:
        fail(exc.message)
    except Exception as exc:
        fail(str(exc))
    if output in ("json", "yaml"):
        echo(dump(res, output))
        return
    rows = []
    for it in res["items"]:
        r, ns, name = by_lmdb_key(it["key"])
        rv = ((it.get("object") or {}).get("metadata") or {}).get("resourceVersion", "")
        rows.append([r.plural, ns or "", name, str(rv), str(it.get("sync")), str(it.get("updates"))])
    if not rows:
        echo(f"No objects on node {node}.")
        return
    echo(table(["RESOURCE", "NAMESPACE", "NAME", "RESOURCEVERSION", "SYNC", "UPDATES"], rows))


@node_app.command("stats")
def node_stats(ctx: typer.Context, node: str, output: Annotated[str | None, typer.Option("-o", help="json|yaml")] = None) -> None:
    """Counters of a node's metamanager: messages received, applied, skipped, store size."""
    from edgebus.errors import ApiError as LibApiError

    try:
        res = asyncio.run(_meta(ctx, node, "stats"))
    except LibApiError as exc:
        fail(exc.message)
    if output in ("json", "yaml"):
        echo(dump(res, output))
        return
    echo(table(["KEY", "VALUE"], [[k, str(v)] for k, v in res.items()]))


# -- objects ----------------------------------------------------------------------------


@app.command()
def get(
    ctx: typer.Context,
    resource: str,
    name: Annotated[str | None, typer.Argument()] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    output: Annotated[str | None, typer.Option("--output", "-o", help="json|yaml|wide")] = None,
    selector: Annotated[str | None, typer.Option("--selector", "-l")] = None,
    field_selector: Annotated[str | None, typer.Option("--field-selector")] = None,
) -> None:
    """Show objects (tables like kubectl; -o json|yaml|wide)."""
    resources.get(ctx.obj.api(), resource, name, namespace, all_namespaces, output, selector, field_selector)


@app.command()
def apply(
    ctx: typer.Context,
    filename: Annotated[str, typer.Option("--filename", "-f", help="YAML manifest ('-' for stdin)")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
) -> None:
    """Create objects, or update them to match the manifest."""
    resources.apply(ctx.obj.api(), filename, namespace)


@app.command()
def delete(
    ctx: typer.Context,
    resource: Annotated[str | None, typer.Argument()] = None,
    names_: Annotated[list[str] | None, typer.Argument(metavar="NAME...")] = None,
    filename: Annotated[str | None, typer.Option("--filename", "-f")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    ignore_not_found: Annotated[bool, typer.Option("--ignore-not-found")] = False,
    grace_period: Annotated[int | None, typer.Option("--grace-period", min=0, help="seconds a pod gets to stop (default: its terminationGracePeriodSeconds)")] = None,
    force: Annotated[bool, typer.Option("--force", help="remove at once, without waiting for the node (a pod's containers are then killed when its node sees it)")] = False,
) -> None:
    """Delete objects by name or by manifest. A pod on a node is Terminating until the
    node confirms its containers are stopped and removed."""
    resources.delete(ctx.obj.api(), resource, names_ or [], filename, namespace, ignore_not_found, grace_period=0 if force else grace_period)


@app.command()
def top(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    iterations: Annotated[int, typer.Option(help="stop after this many refreshes (0: until Ctrl-C)")] = 0,
) -> None:
    """A live summary of every node: Ready, link, pods, backlogs, store."""
    inspect_cmds.top(ctx, interval, iterations)


@app.command("deploy")
def deploy(
    what: Annotated[str, typer.Argument(help="compose (docker-compose.yml), k8s (k8s/) or k8s-secrets (the Secrets k8s/ names)")],
    out: Annotated[Path, typer.Option("--out", help="the repository root to write into (k8s-secrets: the file, default k8s-secrets.yaml)")] = Path("."),
    check: Annotated[bool, typer.Option("--check", help="only report files that differ from the plan")] = False,
    pki_dir: Annotated[Path, typer.Option("--dir", help="k8s-secrets: where the cloud's PKI is kept (made there once)")] = Path(".edgebus-k8s"),
    token_ttl: Annotated[str, typer.Option("--token-ttl", help="k8s-secrets: lifetime of the edge pods' bootstrap token (0: none)")] = "24h",
) -> None:
    """Render docker-compose.yml or the Kubernetes manifests from the plan `edgebus up` runs,
    or the Secrets of the manifests (credentials, keys, certificates; never commit them)."""
    from edgebus.deploy.render import drift, write

    if what == "k8s-secrets":
        from edgebus.cli.identity import parse_duration
        from edgebus.deploy import k8s_secrets

        f = k8s_secrets.write(pki_dir, Path("k8s-secrets.yaml") if out == Path(".") else out, token_ttl=parse_duration(token_ttl))
        echo(f"wrote {f} (the PKI is in {pki_dir}/cloud/pki; keep it, do not commit either): kubectl apply -f {f} -k k8s/")
        return

    if check:
        stale = drift(what, out)
        if stale:
            fail("out of date: " + ", ".join(stale) + f" (run: edgebus deploy {what})")
        echo(f"{what}: up to date")
        return
    for rel in write(what, out):
        echo(f"wrote {rel}")


@app.command()
def kubeconfig(
    ctx: typer.Context,
    node: Annotated[str | None, typer.Option("--node", help="a node's metaserver instead of the cloud apiserver")] = None,
) -> None:
    """Print a kubeconfig for kubectl (the cloud, or one node's local metaserver)."""
    from edgebus.cli.kubeconfig import render

    echo(render(ctx.obj.server, ctx.obj.data_dir, node).rstrip())


@app.command()
def version() -> None:
    """Print the edgebus version."""
    echo(f"edgebus {edgebus.__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
