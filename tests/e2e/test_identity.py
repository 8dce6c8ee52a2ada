"""Joining, renewing and revoking node credentials, against a real lab (HTTPS join through the
apiserver, cloudhub as the authority, nats-server enforcing every credential)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from edgebus import names
from edgebus.bus import Bus, BusAuth
from edgebus.identity.join import JoinError, join
from edgebus.identity.node import NodeIdentity
from edgebus.identity.tokens import Token
from edgebus.lab import create_token
from edgebus.errors import Conflict
from edgebus.objects import CONFIGMAPS, NODES, PODS, SECRETS
from edgebus.testing.labrun import LabCli
from edgebus.testing.rawleaf import RawLeaf
from edgebus.testing.waiting import eventually

from .conftest import BOTH_MODES, RunningLab, start_lab, stop_lab

pytestmark = pytest.mark.e2e


async def leafz(rl: RunningLab) -> dict[str, dict]:
    """The hub's leaf connections by remote server name (as its system account reports them)."""
    plan = rl.lab.plan
    sysbus = Bus(plan.cloud_nats_url, name="probe-sys", auth=BusAuth(creds_file=str(plan.cloud_pki().sys_creds_file), ca_file=plan.ca_file))
    await sysbus.connect(retry_for=5)
    try:
        r = await sysbus.request("$SYS.REQ.SERVER.PING.LEAFZ", b"{}", timeout=3)
        return {lf["name"]: lf for lf in json.loads(r.data)["data"].get("leafs") or []}
    finally:
        await sysbus.close()


async def test_join_with_tokens_and_its_refusals(tmp_path: Path) -> None:
    rl = await start_lab(tmp_path, proxy=False, containerd=False, devices=False)
    plan = rl.lab.plan
    cloud = f"{plan.host}:{plan.apiserver_port}"
    try:
        async def try_join(token: str, name: str, ident: NodeIdentity, **kw: object) -> str:
            try:
                await asyncio.to_thread(join, cloud, token, name, ident, **kw)  # type: ignore[arg-type]
                return "ok"
            except JoinError as exc:
                return str(exc)

        once = await create_token(plan, uses=1, ttl=3600)
        x1 = NodeIdentity(tmp_path / "x1")
        assert await try_join(str(once), "edge-x", x1) == "ok"
        assert x1.joined and (x1.creds_file.stat().st_mode & 0o777) == 0o600 and (x1.dir.stat().st_mode & 0o777) == 0o700
        assert (await rl.store.get(NODES, None, "edge-x"))["metadata"]["labels"]["node-role.kubernetes.io/edge"] == ""
        # used up, expired, revoked, wrong secret, wrong CA: one clear line each
        assert await try_join(str(once), "edge-y", NodeIdentity(tmp_path / "y")) == f"bootstrap token {once.id} has no uses left; create a new one with `edgebus token create`"
        short = await create_token(plan, uses=None, ttl=1)
        await asyncio.sleep(1.5)
        assert (await try_join(str(short), "edge-y", NodeIdentity(tmp_path / "y"))).startswith(f"bootstrap token {short.id} expired at ")
        gone = await create_token(plan, uses=None, ttl=3600)
        await rl.store.delete(SECRETS, "kube-system", gone.secret_name())
        assert await try_join(str(gone), "edge-y", NodeIdentity(tmp_path / "y")) == f"invalid bootstrap token {gone.id}: unknown, revoked or wrong secret"
        good = await create_token(plan, uses=None, ttl=3600)
        assert await try_join(str(Token(good.id, "x" * 16, good.ca_pin)), "edge-y", NodeIdentity(tmp_path / "y")) == f"invalid bootstrap token {good.id}: unknown, revoked or wrong secret"
        wrong_pin = "0" * 64
        msg = await try_join(str(Token(good.id, good.secret, wrong_pin)), "edge-y", NodeIdentity(tmp_path / "y"))
        assert msg.startswith(f"the cloud at https://{cloud} presents CA sha256:{good.ca_pin}, but the token pins sha256:{wrong_pin}"), msg
        # a second node claiming a name that is held: refused unless forced, then the first credential is dead
        x2 = NodeIdentity(tmp_path / "x2")
        assert "node edge-x has already joined" in await try_join(str(good), "edge-x", x2) and "--force" in await try_join(str(good), "edge-x", x2)

        async def link_works(ident: NodeIdentity) -> bool:
            leaf = await RawLeaf.connect(plan.host, plan.cloud_leaf_port, creds=str(ident.creds_file), ca_file=str(ident.ca_file), cert_file=str(ident.link_cert_file), key_file=str(ident.link_key_file))
            try:
                await leaf.ping()
                await asyncio.sleep(0.5)
                return not leaf.closed.is_set() and not leaf.errors
            finally:
                await leaf.close()

        assert await link_works(x1)
        assert await try_join(str(good), "edge-x", x2, force=True) == "ok"
        await eventually(lambda: link_works(x2), timeout=5, msg="the new credential works")
        await eventually(lambda: _not(link_works(x1)), timeout=5, msg="the replaced credential is refused")

        # the CLI: create, list, revoke; `edgebus node join` prints one line either way
        cli = LabCli(Path(plan.data_dir))
        tok = cli.run("token", "create", "--ttl", "2h", "--uses", "2", "--description", "line 3").stdout.strip()
        listed = cli.run("token", "list").stdout
        tid = Token.parse(tok).id
        assert tid in listed and "line 3" in listed and " 2 " in listed
        out = cli.run("node", "join", "--cloud", cloud, "--token", tok, "--name", "edge-z", "--node-dir", str(tmp_path / "z")).stdout
        assert out.startswith("node edge-z joined; credential in ")
        cli.run("token", "revoke", tid)
        bad = cli.run("node", "join", "--cloud", cloud, "--token", tok, "--name", "edge-w", "--node-dir", str(tmp_path / "w"), check=False)
        assert bad.returncode != 0 and bad.stderr.strip() == f"error: invalid bootstrap token {tid}: unknown, revoked or wrong secret"
    finally:
        await stop_lab(rl)


async def _not(aw: object) -> bool:
    return not await aw  # type: ignore[misc]


async def test_link_certificate_rotates_online_under_load_then_renews_after_expiry_and_revocation_cuts_off(tmp_path: Path) -> None:
    lifetime = 24.0  # renewed at 16 s
    rl = await start_lab(tmp_path, proxy=False, containerd=False, devices=False, link_lifetime=lifetime)
    plan = rl.lab.plan
    ident = plan.node_identity("edge-1")
    try:
        first = (await leafz(rl))["edge-1"]
        first_cert = ident.link_cert_file.read_bytes()
        # load across the rotation: desired state keeps changing; the node must end with all of it
        # (ConfigMaps go to a node when a pod bound to it uses them)
        holder = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "holder", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}], "volumes": [{"name": f"v{i}", "configMap": {"name": f"load-{i}"}} for i in range(20)]}}
        await rl.store.create(PODS, holder)
        deadline = time.monotonic() + lifetime
        n = 0
        while time.monotonic() < deadline and n < 400:
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"load-{n % 20}", "namespace": "default"}, "data": {"n": str(n)}}
            try:
                await rl.store.create(CONFIGMAPS, cm)
            except Exception:
                cur = await rl.store.get(CONFIGMAPS, "default", f"load-{n % 20}")
                await rl.store.update(CONFIGMAPS, {**cur, "data": {"n": str(n)}})
            n += 1
            await asyncio.sleep(0.05)
        await eventually(lambda: ident.link_cert_file.read_bytes() != first_cert, timeout=15, msg="link certificate renewed")
        last = {f"load-{i % 20}": str(i) for i in range(n)}

        async def edge_has_all() -> bool:
            items = (await rl.meta.list("configmaps"))["items"]
            got = {it["object"]["metadata"]["name"]: it["object"]["data"]["n"] for it in items if it["object"]["metadata"]["name"].startswith("load-")}
            return got == last

        await eventually(edge_has_all, timeout=20, msg="every last version on the node")
        now = (await leafz(rl))["edge-1"]
        assert now["id"] == first["id"], "the same leaf connection: the rotation did not drop the link"
        hub_state = (await rl.edge.call(names.edgehub_subject("edge-1", "state"), _q())).content
        assert hub_state["credential"]["renewed"] >= 1 and hub_state["link"] == "up"
        assert hub_state["linkSince"] < time.time() - lifetime / 2, "the link stayed up through the rotation"

        # offline past the certificate's lifetime: the node renews over HTTPS when it is back
        await rl.lab.stop_group("edge-1")
        await asyncio.sleep(max(0.0, ident.link_not_after().timestamp() - time.time()) + 2)  # type: ignore[union-attr]
        await rl.lab.start_group("edge-1")
        await rl.edge.close()
        rl.edge = plan.node_bus("edge-1", "test-edge")
        await rl.edge.connect(retry_for=10)
        await eventually(lambda: _link_up(rl), timeout=40, msg="link back after an offline renewal")
        assert ident.link_not_after().timestamp() > time.time()  # type: ignore[union-attr]

        # revocation: deleting the Node cuts the node off within 5 s, and it stays off
        t0 = time.monotonic()
        for _ in range(20):  # the Node is written by its heartbeats meanwhile: a delete may race one
            try:
                await rl.store.delete(NODES, None, "edge-1")
                break
            except Conflict:
                await asyncio.sleep(0.05)
        await eventually(lambda: _gone(rl), timeout=5, msg="edge-1's link closed by the hub")
        assert time.monotonic() - t0 <= 5
        await asyncio.sleep(3)
        assert "edge-1" not in await leafz(rl), "the revoked node cannot reconnect"
    finally:
        await stop_lab(rl)


def _q():  # type: ignore[no-untyped-def]
    from edgebus.envelope import Envelope

    return Envelope.new(source="test", operation="query", content={})


async def _link_up(rl: RunningLab) -> bool:
    st = (await rl.edge.call(names.edgehub_subject("edge-1", "state"), _q())).content
    return bool(st["link"] == "up")


async def _gone(rl: RunningLab) -> bool:
    return "edge-1" not in await leafz(rl)


@BOTH_MODES
async def test_a_node_joins_and_runs_on_its_own(tmp_path: Path, edge_mode: str) -> None:
    """The operator's path: `edgebus token create` on the cloud, then on the node's host
    `edgebus node join` and `edgebus node start` (here a second node beside the lab's); all
    in one, the command becomes the node's one process, its nats-server its child."""
    import os
    import subprocess
    import sys

    from edgebus.testing.labrun import free_base_port

    rl = await start_lab(tmp_path, proxy=False, containerd=False, devices=False)
    plan = rl.lab.plan
    cli = LabCli(Path(plan.data_dir))
    node_dir = tmp_path / "edge-s"
    proc = None
    try:
        tok = cli.run("token", "create", "--ttl", "10m", "--uses", "1").stdout.strip()
        cli.run("node", "join", "--cloud", f"{plan.host}:{plan.apiserver_port}", "--token", tok, "--name", "edge-s", "--node-dir", str(node_dir))
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEBUS_")}
        log = open(tmp_path / "edge-s.log", "wb")
        base = free_base_port(1) + 10
        aio = ["--all-in-one"] if edge_mode == "all-in-one" else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgebus.cli.main", "node", "start", "--node-dir", str(node_dir), "--port-base", str(base), "--no-containerd", *aio],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        await eventually(lambda: rl.node_ready("edge-s"), timeout=60, msg="edge-s Ready in the cloud")
        server = None
        if aio:
            assert b"edgebus.allinone" in Path(f"/proc/{proc.pid}/cmdline").read_bytes(), "the command became the all-in-one process"
            kids = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
            [server] = [k for k in kids if b"nats-server" in Path(f"/proc/{k}/cmdline").read_bytes()]
        await rl.store.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "for-s", "namespace": "default"}, "data": {"k": "v"}})
        await rl.store.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "on-s", "namespace": "default"}, "spec": {"nodeName": "edge-s", "containers": [{"name": "c", "image": "i", "envFrom": [{"configMapRef": {"name": "for-s"}}]}]}})

        def store_has_both() -> bool:
            out = cli.run("node", "objects", "edge-s", check=False).stdout
            return "for-s" in out and "on-s" in out

        await eventually(lambda: asyncio.to_thread(store_has_both), timeout=30, msg="edge-s's own store holds its desired state")
        assert (node_dir / "identity" / "node.creds").stat().st_mode & 0o777 == 0o600
        if server is not None:
            proc.terminate()
            proc.wait(30)
            assert proc.returncode == 0 and not Path(f"/proc/{server}").exists(), "stopping the node stopped its server"
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        await stop_lab(rl)
