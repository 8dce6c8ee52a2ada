"""``edgebus logs | exec | image load``: talk to a pod's node (its edged) over NATS.

The pod's node comes from the apiserver (``spec.nodeName``); the request then goes through
the cloud NATS server and the node's leaf link to that node's edged, so these commands
work while the node is online and say so clearly when it is not.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Annotated, Any

import typer

from edgebus.cli.client import ApiError, api_client, cloud_bus
from edgebus.cli.output import echo, fail

image_app = typer.Typer(help="Container images on edge nodes.", no_args_is_help=True)


def _opts(ctx: typer.Context) -> tuple[str | None, str | None, str | None]:
    o = ctx.obj
    return getattr(o, "server", None), getattr(o, "nats", None), getattr(o, "data_dir", None)


def _node_of(ctx: typer.Context, namespace: str, pod: str) -> str:
    server, _, data_dir = _opts(ctx)
    api = api_client(server, data_dir)
    try:
        obj = api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")
    except ApiError as exc:
        fail(str(exc))
        raise
    node = (obj.get("spec") or {}).get("nodeName")
    if not node:
        fail(f'pod "{pod}" is not scheduled to a node yet')
    return str(node)


async def _with_client(ctx: typer.Context, node: str, fn: Any) -> Any:
    from edgebus.edgedclient import EdgedClient

    _, nats, data_dir = _opts(ctx)
    bus = cloud_bus(nats, data_dir, request_timeout=10)
    await bus.connect(retry_for=5)
    try:
        return await fn(EdgedClient(bus, node, source="edgebus-cli"))
    finally:
        await bus.close()


def logs(
    ctx: typer.Context,
    pod: Annotated[str, typer.Argument(help="pod name")],
    container: Annotated[str | None, typer.Option("--container", "-c", help="container (required when the pod has several)")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    tail: Annotated[int | None, typer.Option("--tail", help="only the last N lines")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream new lines until the container stops")] = False,
    previous: Annotated[bool, typer.Option("--previous", "-p", help="the previous (restarted) container's log")] = False,
    timestamps: Annotated[bool, typer.Option("--timestamps", help="prefix each line with its time")] = False,
    since: Annotated[int | None, typer.Option("--since", help="only lines of the last N seconds")] = None,
) -> None:
    """Print a container's log, fetched from its edge node."""
    from edgebus.errors import ApiError as LibApiError

    node = _node_of(ctx, namespace, pod)
    out = sys.stdout.buffer

    async def run(client: Any) -> None:
        it = client.logs(namespace, pod, container=container, tail=tail, follow=follow, previous=previous, timestamps=timestamps, since_seconds=since)
        async with aclosing(it):
            async for chunk in it:
                out.write(chunk)
                out.flush()

    try:
        asyncio.run(_with_client(ctx, node, run))
    except LibApiError as exc:
        fail(exc.message)
    except KeyboardInterrupt:
        pass


def exec_(
    ctx: typer.Context,
    pod: Annotated[str, typer.Argument(help="pod name")],
    command: Annotated[list[str], typer.Argument(help="the command and its arguments (after --)")],
    container: Annotated[str | None, typer.Option("--container", "-c")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    timeout: Annotated[float, typer.Option("--timeout", help="seconds the command may run")] = 30.0,
) -> None:
    """Run a command in a container and print its output; exits with its exit code."""
    from edgebus.errors import ApiError as LibApiError

    cmd = list(command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        fail("give the command after --, e.g. edgebus exec POD -- ls /")
    node = _node_of(ctx, namespace, pod)
    try:
        res = asyncio.run(_with_client(ctx, node, lambda c: c.exec(namespace, pod, cmd, container=container, timeout=timeout)))
    except LibApiError as exc:
        fail(exc.message)
        raise
    sys.stdout.buffer.write(bytes(res.get("stdout") or b""))
    sys.stdout.buffer.flush()
    sys.stderr.buffer.write(bytes(res.get("stderr") or b""))
    sys.stderr.buffer.flush()
    raise typer.Exit(int(res.get("exitCode") or 0))


@image_app.command("load")
def image_load(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="an OCI or Docker image archive (.tar)", exists=True, dir_okay=False, readable=True)],
    node: Annotated[list[str], typer.Option("--node", help="edge node(s) to load the image on")],
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for each node")] = 600.0,
) -> None:
    """Ship an image archive to edge nodes over the bus and import it there (no registry)."""
    from edgebus.errors import ApiError as LibApiError

    failed = False
    for n in node:
        try:
            res = asyncio.run(_with_client(ctx, n, lambda c: c.load_image(archive, timeout=timeout)))
        except LibApiError as exc:
            echo(f"error: {n}: {exc.message}")
            failed = True
            continue
        imgs = ", ".join(res.get("images") or []) or "(no named image)"
        echo(f"{n}: loaded {imgs} ({res.get('bytes', 0)} bytes)")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
    app.command("exec", context_settings={"allow_interspersed_args": False})(exec_)
    app.add_typer(image_app, name="image")


__all__ = ["register"]
