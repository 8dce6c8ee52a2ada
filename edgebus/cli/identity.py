"""``edgebus token create|list|revoke``, ``edgebus node join``, ``edgebus node revoke``."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated

import typer

from edgebus.cli.client import ApiError, api_client, ca_file
from edgebus.cli.output import echo, fail, table
from edgebus.identity import pki, tokens
from edgebus.identity.join import JoinError, join
from edgebus.identity.node import NodeIdentity

token_app = typer.Typer(help="Bootstrap tokens nodes join with.", no_args_is_help=True)

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> dt.timedelta | None:
    """``24h``, ``90m``, ``7d``, ``1h30m``; ``0`` means never expires."""
    if text.strip() in ("0", "0s"):
        return None
    m = _DURATION.fullmatch(text.strip())
    if not m or not any(m.groups()):
        raise typer.BadParameter(f"{text!r} is not a duration like 24h, 90m, 7d or 0 (never)")
    d, h, mi, s = (int(x or 0) for x in m.groups())
    return dt.timedelta(days=d, hours=h, minutes=mi, seconds=s)


def _pin(data_dir: str | None) -> str:
    f = ca_file(data_dir)
    if not f or not Path(f).exists():
        fail("the cloud's CA bundle is unknown: set EDGEBUS_CA_FILE (or run this where the lab runs)")
    return pki.spki_sha256(pki.load_certs(Path(f).read_bytes())[0])


def _secrets_path() -> str:
    return f"/api/v1/namespaces/{tokens.NAMESPACE}/secrets"


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    ttl: Annotated[str, typer.Option("--ttl", help="how long the token may be used (e.g. 24h, 7d; 0: no expiry)")] = "24h",
    uses: Annotated[int | None, typer.Option("--uses", min=1, help="how many nodes may join with it (default: any number)")] = None,
    description: Annotated[str, typer.Option("--description", help="what it is for")] = "",
) -> None:
    """Print a new bootstrap token (it pins the cloud's CA, as kubeadm's and KubeEdge's do)."""
    tok = tokens.Token.new(_pin(ctx.obj.data_dir))
    obj = tokens.secret_object(tok, ttl=parse_duration(ttl), uses=uses, description=description)
    try:
        api_client(ctx.obj.server, ctx.obj.data_dir).request("POST", _secrets_path(), json_body=obj)
    except ApiError as exc:
        fail(str(exc))
    echo(str(tok))


@token_app.command("list")
def token_list(ctx: typer.Context) -> None:
    """Bootstrap tokens, their expiry and the uses they have left."""
    try:
        body = api_client(ctx.obj.server, ctx.obj.data_dir).request("GET", _secrets_path(), params={"labelSelector": "edgebus.io/bootstrap-token"})
    except ApiError as exc:
        fail(str(exc))
    now = dt.datetime.now(dt.UTC)
    rows = []
    for obj in body.get("items", []):
        t = tokens.StoredToken.from_secret(obj)
        if t is None:
            continue
        if t.expires is None:
            exp, state = "<never>", "valid"
        else:
            exp = tokens.rfc3339(t.expires)
            state = "expired" if now >= t.expires else "valid"
        if t.uses is not None and t.uses <= 0:
            state = "used up"
        rows.append([t.id, exp, "unlimited" if t.uses is None else str(t.uses), state, t.description])
    if not rows:
        echo("No bootstrap tokens.")
        return
    echo(table(["ID", "EXPIRES", "USES LEFT", "STATE", "DESCRIPTION"], rows))


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: Annotated[str, typer.Argument(help="the token's id (or the whole token)")]) -> None:
    """Revoke a bootstrap token: no node can join with it from now on."""
    tid = token_id.split(".")[-2] if token_id.count(".") >= 1 else token_id
    try:
        api_client(ctx.obj.server, ctx.obj.data_dir).request("DELETE", f"{_secrets_path()}/{tokens.SECRET_PREFIX}{tid}")
    except ApiError as exc:
        fail(str(exc) if exc.code != 404 else f"no bootstrap token {tid}")
    echo(f"bootstrap token {tid} revoked")


def node_join(
    cloud: Annotated[str, typer.Option("--cloud", help="the cloud's apiserver, HOST:PORT")],
    token: Annotated[str, typer.Option("--token", help="a token from `edgebus token create`", envvar="EDGEBUS_JOIN_TOKEN")],
    name: Annotated[str, typer.Option("--name", help="this node's name (DNS-1123)")],
    node_dir: Annotated[str, typer.Option("--node-dir", help="the node's data dir (its identity goes in <dir>/identity)")] = str(Path.home() / ".edgebus" / "node"),
    force: Annotated[bool, typer.Option("--force", help="replace the credential of a node of the same name (it stops working)")] = False,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="a label of the Node, key=value")] = None,
) -> None:
    """Join the cloud: check its CA against the token, get this node's own credential."""
    labels = {}
    for item in label or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"label {item!r} is not key=value")
        labels[k] = v
    ident = NodeIdentity.at(node_dir)
    try:
        res = join(cloud, token, name, ident, force=force, labels=labels)
    except (JoinError, tokens.TokenError) as exc:
        fail(str(exc))
    na = ident.link_not_after()
    echo(f"node {res.node} joined; credential in {ident.dir} (link certificate valid until {na.isoformat() if na else '?'})")


def node_revoke(ctx: typer.Context, node: Annotated[str, typer.Argument(help="the node")]) -> None:
    """Revoke a node: its Node is deleted and its credential stops working everywhere."""
    try:
        api_client(ctx.obj.server, ctx.obj.data_dir).request("DELETE", f"/api/v1/nodes/{node}")
    except ApiError as exc:
        fail(str(exc))
    echo(f"node {node} revoked")
