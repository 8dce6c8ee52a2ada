"""``edgebus inspect`` and ``edgebus top``: what the NATS tools show, with msgpack decoded.

Everything is read over the cloud NATS server: the cloud's JetStream directly, each node's
JetStream through its leaf connection (``$JS.<node>.API``), each node's services by
request/reply. A node whose link is down shows as unreachable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Annotated, Any

import typer

from edgebus import clock, names
from edgebus.bus import Bus, BusError, BusMsg, CaughtUp, list_consumers, list_streams, read_stream, stream_state
from edgebus.cli.client import ApiError, api_client, cloud_bus
from edgebus.cli.output import echo, fail, table
from edgebus.envelope import Envelope, unpack
from edgebus.errors import EdgebusError
from edgebus.metaclient import MetaClient

inspect_app = typer.Typer(help="Inspect streams, consumers, nodes and live traffic (msgpack decoded).", no_args_is_help=True)


class NodeBuses:
    """One connection per node for JetStream requests into the node's own domain: the node's
    server answers them, and a node may only answer under ``edgebus.reply.<node>.``."""

    def __init__(self, ctx: typer.Context) -> None:
        self.ctx = ctx
        self.buses: dict[str, Bus] = {}

    async def __call__(self, node: str) -> Bus:
        if node not in self.buses:
            b = cloud_bus(self.ctx.obj.nats, self.ctx.obj.data_dir, name=f"edgebus-inspect-{node}", request_timeout=3, node=node)
            await b.connect(retry_for=5)
            self.buses[node] = b
        return self.buses[node]

    async def close(self) -> None:
        for b in self.buses.values():
            await b.close()


_node_buses: NodeBuses | None = None


async def node_bus(node: str) -> Bus:
    assert _node_buses is not None
    return await _node_buses(node)


def _run(ctx: typer.Context, fn: Callable[[Bus], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        global _node_buses
        bus = cloud_bus(ctx.obj.nats, ctx.obj.data_dir, name="edgebus-inspect", request_timeout=3)
        try:
            await bus.connect(retry_for=5)
        except EdgebusError as exc:
            fail(f"cannot reach the cloud NATS server: {exc}")
        _node_buses = NodeBuses(ctx)
        try:
            return await fn(bus)
        finally:
            await _node_buses.close()
            await bus.close()

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return None


def _nodes(ctx: typer.Context) -> list[str]:
    try:
        body = api_client(ctx.obj.server, ctx.obj.data_dir).request("GET", "/api/v1/nodes")
    except ApiError as exc:
        fail(str(exc))
    return [n["metadata"]["name"] for n in body.get("items", [])]


def decode(data: bytes) -> Any:
    """An envelope as a plain dict, any other msgpack as itself, else the raw text."""
    try:
        env = Envelope.decode(data)
        return {
            "id": env.id,
            "parent_id": env.parent_id,
            "route": {"source": env.route.source, "operation": env.route.operation, "resource": env.route.resource},
            "resource_version": env.resource_version,
            "seq": env.seq,
            "content": env.content,
        }
    except EdgebusError:
        pass
    try:
        return unpack(data)
    except EdgebusError:
        return data.decode("utf-8", "replace")


def _fmt_msg(m: BusMsg, *, headers: bool) -> str:
    ts = (m.timestamp or dt.datetime.now(dt.UTC)).strftime("%H:%M:%S.%f")[:-3]
    lines = [f"[{ts}] {m.subject}" + (f"  (seq {m.seq})" if m.seq else "")]
    if headers:
        for k, v in sorted(m.headers.items()):
            lines.append(f"  {k}: {v}")
    lines.append("  " + json.dumps(decode(m.data), default=str))
    return "\n".join(lines)


async def _domain_rows(bus: Bus, domain: str | None, label: str) -> list[list[str]]:
    try:
        streams = await list_streams(bus, domain=domain)
    except BusError as exc:
        return [[label, "-", f"unreachable ({type(exc).__name__})", "", "", "", "", ""]]
    rows = []
    for s in sorted(streams, key=lambda s: s.name):
        rows.append([label, s.name, ",".join(s.subjects) or "(sourced)", str(s.messages), str(s.bytes), str(s.first_seq), str(s.last_seq), str(s.consumers)])
    return rows


@inspect_app.command("streams")
def streams(ctx: typer.Context, node: Annotated[list[str] | None, typer.Option("--node", "-n", help="only these nodes (default: cloud and every node)")] = None) -> None:
    """Streams of the cloud and of every node, with message counts."""
    nodes = node or _nodes(ctx)

    async def go(bus: Bus) -> None:
        rows = [] if node else await _domain_rows(bus, None, "cloud")
        for n in nodes:
            rows += await _domain_rows(await node_bus(n), names.node_domain(n), n)
        echo(table(["DOMAIN", "STREAM", "SUBJECTS", "MESSAGES", "BYTES", "FIRST", "LAST", "CONSUMERS"], rows))

    _run(ctx, go)


async def node_state(bus: Bus, node: str) -> dict[str, Any]:
    """Link, backlogs and store counters of one node (through its leaf connection)."""
    out: dict[str, Any] = {"node": node}
    try:
        env = Envelope.new(source="edgebus-inspect", operation="query", content={})
        out["edgehub"] = (await bus.call(names.edgehub_subject(node, "state"), env, timeout=3)).content
    except BusError as exc:
        out["edgehub"] = {"error": f"unreachable ({type(exc).__name__})"}
    try:
        out["metamanager"] = await MetaClient(bus, node, timeout=3).stats()
    except EdgebusError as exc:
        out["metamanager"] = {"error": str(exc)}
    domain = names.node_domain(node)
    try:
        cons = await list_consumers(await node_bus(node), names.STREAM_EDGE_DOWN, domain=domain)
        out["downPending"] = {c.name: c.num_pending + c.num_ack_pending for c in cons}
    except BusError:
        out["downPending"] = {}
    return out


@inspect_app.command("consumers")
def consumers(ctx: typer.Context) -> None:
    """Consumers of the cloud streams, and the per-node lag in both directions."""
    nodes = _nodes(ctx)

    async def go(bus: Bus) -> None:
        rows = []
        for stream in (names.STREAM_UP, names.STREAM_DOWN, names.kv_stream(names.BUCKET_OBJECTS)):
            try:
                for c in await list_consumers(bus, stream):
                    rows.append(["cloud", stream, c.name, c.filter_subject or "", str(c.num_pending), str(c.num_ack_pending), str(c.num_redelivered)])
            except BusError as exc:
                rows.append(["cloud", stream, "-", f"error: {exc}", "", "", ""])
        for n in nodes:
            try:
                for stream in (names.STREAM_EDGE_DOWN, names.STREAM_EDGE_UP):
                    for c in await list_consumers(await node_bus(n), stream, domain=names.node_domain(n)):
                        rows.append([n, stream, c.name, c.filter_subject or "", str(c.num_pending), str(c.num_ack_pending), str(c.num_redelivered)])
            except BusError as exc:
                rows.append([n, "-", "-", f"unreachable ({type(exc).__name__})", "", "", ""])
        echo(table(["DOMAIN", "STREAM", "CONSUMER", "FILTER", "PENDING", "ACK-PENDING", "REDELIVERED"], rows))
        echo("")
        lag = []
        for n in nodes:
            st = await node_state(bus, n)
            hub = st["edgehub"]
            if "error" in hub:
                lag.append([n, "unreachable", "-", "-", "-"])
                continue
            src = (hub.get("downstream", {}).get("sources") or [{}])[0]
            lag.append([n, hub.get("link", "?"), str(src.get("lag", "-")), str(sum(st["downPending"].values())), str(hub.get("outbox", {}).get("backlog", "-"))])
        echo(table(["NODE", "LINK", "DOWN-SOURCE-LAG", "DOWN-UNAPPLIED", "UP-BACKLOG"], lag))

    _run(ctx, go)


@inspect_app.command("node")
def node(ctx: typer.Context, name: str, output: Annotated[str | None, typer.Option("-o", help="json")] = None) -> None:
    """A node's link state, backlogs up and down, last heartbeat and store counters."""

    async def go(bus: Bus) -> None:
        st = await node_state(bus, name)
        if output == "json":
            echo(json.dumps(st, indent=2, default=str))
            return
        hub, mm = st["edgehub"], st["metamanager"]
        if "error" in hub:
            fail(f"node {name}: {hub['error']} — its link is down or edgehub is stopped")
        since = dt.datetime.fromtimestamp(hub["linkSince"], dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        hb = hub.get("lastHeartbeat") or 0
        src = (hub.get("downstream", {}).get("sources") or [{}])[0]
        rows = [
            ["link", f"{hub['link']} since {since}"],
            ["joined", str(hub.get("joined"))],
            ["last heartbeat", f"{time.time() - hb:.1f}s ago" if hb else "never"],
            ["up: outbox last seq", str(hub["outbox"]["lastSeq"])],
            ["up: forwarded to cloud", str(hub["outbox"]["forwardedSeq"])],
            ["up: backlog", str(hub["outbox"]["backlog"])],
            ["down: stored on node", str(hub["downstream"]["messages"])],
            ["down: source lag", str(src.get("lag", "-")) + (f" (error: {src['error']})" if src.get("error") else "")],
            ["down: not yet applied", str(sum(st["downPending"].values()))],
            ["downstream consumer creates", str(hub.get("downstream", {}).get("consumerCreates", 0))],
        ]
        if "error" not in mm:
            rows += [
                ["store: objects", str(mm["objects"])],
                ["store: received / applied / skipped", f"{mm['received']} / {mm['applied']} / {mm['skipped']}"],
                ["store: LMDB bytes", str(mm["lmdb_bytes"])],
            ]
        echo(table(["NODE " + name, ""], rows))

    _run(ctx, go)


@inspect_app.command("tail")
def tail(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="subject or wildcard, e.g. 'edgebus.>'")] = "edgebus.>",
    count: Annotated[int, typer.Option("--count", "-c", help="stop after this many messages (0: no limit)")] = 0,
    seconds: Annotated[float, typer.Option("--seconds", help="stop after this many seconds (0: no limit)")] = 0.0,
    stream: Annotated[str | None, typer.Option("--stream", help="replay this stream's stored messages first")] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="the stream's JetStream domain (a node name)")] = None,
    headers: Annotated[bool, typer.Option("--headers", help="print headers")] = False,
) -> None:
    """Print messages live (decoded); with --stream, the stored ones first."""

    async def go(bus: Bus) -> None:
        seen = 0
        done = asyncio.Event()

        def show(m: BusMsg) -> None:
            nonlocal seen
            echo(_fmt_msg(m, headers=headers))
            seen += 1
            if count and seen >= count:
                done.set()

        if stream:
            dom = names.node_domain(domain) if domain else None
            if domain:
                bus = await node_bus(domain)
            try:
                await stream_state(bus, stream, domain=dom)
            except BusError as exc:
                fail(f"stream {stream}: {exc}")
            async with aclosing(read_stream(bus, stream, subject, domain=dom, stop_when_caught_up=True)) as it:
                async for m in it:
                    if isinstance(m, CaughtUp):
                        break
                    show(m)
                    if done.is_set():
                        return

        async def on(m: BusMsg) -> None:
            if not done.is_set():
                show(m)

        unsub = await bus.subscribe(subject, on)
        try:
            await clock.wait_set(done, seconds or None)
        finally:
            await unsub()

    _run(ctx, go)


def top(ctx: typer.Context, interval: float = 1.0, iterations: int = 0) -> None:
    """A live summary of the nodes (Ready, link, backlogs, store), refreshed every interval."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    api = api_client(ctx.obj.server, ctx.obj.data_dir)

    async def snapshot(bus: Bus) -> Table:
        try:
            nodes = api.request("GET", "/api/v1/nodes").get("items", [])
            pods = api.request("GET", "/api/v1/pods").get("items", [])
        except ApiError as exc:
            fail(str(exc))
        from edgebus.objects.tables import node_status

        t = Table(title=f"edgebus — {len(nodes)} nodes, {len(pods)} pods — {dt.datetime.now().strftime('%H:%M:%S')}")
        for col in ("NODE", "STATUS", "LINK", "PODS", "UP BACKLOG", "DOWN LAG", "OBJECTS", "LAST HEARTBEAT"):
            t.add_column(col)
        states = await asyncio.gather(*(node_state(bus, n["metadata"]["name"]) for n in nodes))
        for n, st in zip(nodes, states, strict=True):
            name = n["metadata"]["name"]
            hub, mm = st["edgehub"], st["metamanager"]
            npods = sum(1 for p in pods if (p.get("spec") or {}).get("nodeName") == name)
            status = node_status(n)
            style = "green" if status.startswith("Ready") else "red"
            if "error" in hub:
                t.add_row(name, f"[{style}]{status}[/]", "[red]unreachable[/]", str(npods), "-", "-", "-", "-")
                continue
            src = (hub.get("downstream", {}).get("sources") or [{}])[0]
            backlog = hub.get("outbox", {}).get("backlog", 0)
            hb = hub.get("lastHeartbeat") or 0
            t.add_row(
                name,
                f"[{style}]{status}[/]",
                "[green]up[/]" if hub.get("link") == "up" else "[red]down[/]",
                str(npods),
                f"[yellow]{backlog}[/]" if backlog else "0",
                str(src.get("lag", "-")),
                str(mm.get("objects", "-")),
                f"{time.time() - hb:.1f}s ago" if hb else "never",
            )
        return t

    async def go(bus: Bus) -> None:
        console = Console()
        with Live(await snapshot(bus), console=console, refresh_per_second=4, transient=False) as live:
            n = 1
            while not iterations or n < iterations:
                await asyncio.sleep(interval)
                live.update(await snapshot(bus))
                n += 1

    _run(ctx, go)
