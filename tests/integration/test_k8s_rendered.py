"""The Kubernetes rendering's NATS servers for real: the config and files of the
``edgebus-nats`` Secret (as `edgebus deploy k8s-secrets` writes it) run by a real nats-server,
only its ports moved to free loopback ones and ``/data`` to a temporary directory (what the
pod's mounts do). An anonymous client is refused, a plain-text one too; the rendered service
credentials are accepted; a leaf without a client certificate is refused; and the
``bootstrap-token`` Job's step registers the join token with the admin's credential."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import Error as NatsError

from edgebus.deploy import k8s, k8s_secrets
from edgebus.deploy.boot import k8s_token
from edgebus.natsd import free_port, nats_server_binary

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Rendered:
    root: Path
    secrets: dict[str, dict[str, str]]
    client: int
    leaf: int
    proc: subprocess.Popen[bytes]

    def file(self, secret: str, rel: str) -> Path:
        """A Secret's file where the pod would mount it (under the temporary ``/data``)."""
        p = self.root / "files" / secret / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.secrets[secret][k8s.secret_key(rel)])
        return p

    @property
    def ca(self) -> Path:
        return self.root / "data" / "cloud" / "pki" / "ca.crt"

    def tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return ctx


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rendered]:
    root = tmp_path_factory.mktemp("k8s")
    secrets = {d["metadata"]["name"]: d["stringData"] for d in k8s_secrets.render(root / "operator")}
    nats_secret = secrets[k8s.NATS_SECRET]
    pki = root / "data" / "cloud" / "pki"
    pki.mkdir(parents=True)
    for f in ("ca.crt", "server.crt", "server.key"):
        (pki / f).write_text(nats_secret[f])
    client, leaf, route, monitor = free_port(), free_port(), free_port(), free_port()
    conf = nats_secret["nats.conf"]
    for port, new in ((4222, client), (7422, leaf), (6222, route), (8222, monitor)):
        assert f'"0.0.0.0:{port}"' in conf, port
        conf = conf.replace(f'"0.0.0.0:{port}"', f'"127.0.0.1:{new}"')
    conf = _without_block(conf, "cluster")  # its peers' names resolve only in the cluster (its TLS: tests/unit/test_deploy.py)
    conf = conf.replace('"/data/', f'"{root}/data/')
    assert "/data/" not in conf.replace(f"{root}/data/", "")
    (root / "nats.conf").write_text(conf)
    log = open(root / "nats.log", "wb")
    proc = subprocess.Popen([nats_server_binary(), "-c", str(root / "nats.conf")], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "POD_NAME": "nats-0"})
    log.close()
    r = Rendered(root, secrets, client, leaf, proc)
    try:
        _wait_port(client, proc, root)
        yield r
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _without_block(conf: str, name: str) -> str:
    """The config without its top-level ``name { ... }`` block: one server, JetStream alone."""
    lines, out, inside = conf.splitlines(), [], False
    for line in lines:
        if line == f"{name} {{":
            inside = True
        elif inside and line == "}":
            inside = False
        elif not inside:
            out.append(line)
    assert not inside
    return "\n".join(out) + "\n"


def _wait_port(port: int, proc: subprocess.Popen[bytes], root: Path) -> None:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, (root / "nats.log").read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(4096).startswith(b"INFO"):
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the rendered server did not start: " + (root / "nats.log").read_text())


def _info(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        line = s.recv(65536).split(b"\r\n", 1)[0]
    assert line.startswith(b"INFO ")
    return dict(json.loads(line[5:]))


async def _connect(r: Rendered, **kw: Any) -> nats.NATS:
    return await nats.connect(f"tls://127.0.0.1:{r.client}", tls=r.tls(), tls_hostname="localhost", allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=0, **kw)


async def test_every_listener_requires_tls_and_credentials(rendered: Rendered) -> None:
    for port in (rendered.client, rendered.leaf):
        info = _info(port)
        assert info.get("tls_required") is True and info.get("auth_required") is True, info
    assert _info(rendered.leaf).get("tls_verify") is True, "a leaf must present a client certificate"


async def test_an_anonymous_client_is_refused(rendered: Rendered) -> None:
    with pytest.raises(NatsError, match="(?i)authorization"):
        nc = await _connect(rendered)
        await nc.close()
    # and the same without TLS: the server does not talk in clear
    with pytest.raises((NatsError, OSError)):
        nc = await nats.connect(f"nats://127.0.0.1:{rendered.client}", allow_reconnect=False, connect_timeout=3, max_reconnect_attempts=0)
        await nc.close()


async def test_the_rendered_service_credentials_are_accepted(rendered: Rendered) -> None:
    for svc in ("apiserver", "scheduler", "garbagecollector"):
        creds = rendered.file(k8s.service_secret(svc), f"users/{svc}.creds")
        nc = await _connect(rendered, user_credentials=str(creds))
        try:
            await nc.flush(timeout=5)
            assert nc.is_connected
        finally:
            await nc.close()
    # a credential from another PKI is not
    other = {d["metadata"]["name"]: d["stringData"] for d in k8s_secrets.render(rendered.root / "other-operator")}
    bad = rendered.root / "other.creds"
    bad.write_text(other[k8s.service_secret("apiserver")][k8s.secret_key("users/apiserver.creds")])
    refused_before = (rendered.root / "nats.log").read_text().count("authentication error")
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    try:
        nc = await _connect(rendered, user_credentials=str(bad), error_cb=on_error)
    except (NatsError, OSError) as exc:
        errors.append(exc)
    else:
        try:
            await nc.flush(timeout=3)
        except (NatsError, OSError) as exc:
            errors.append(exc)
        assert not nc.is_connected
        await nc.close()
    assert errors
    assert (rendered.root / "nats.log").read_text().count("authentication error") > refused_before, "refused by the server's authentication"


async def test_a_leaf_without_a_client_certificate_is_refused(rendered: Rendered) -> None:
    raw = socket.create_connection(("127.0.0.1", rendered.leaf), timeout=5)
    try:
        raw.recv(65536)  # INFO
        ctx = rendered.tls()
        with pytest.raises((ssl.SSLError, OSError, ConnectionError)):
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"PING\r\n")
            data = s.recv(1024)
            if not data:
                raise ConnectionError("closed")
            raise AssertionError(f"the server answered a leaf without a certificate: {data!r}")
    finally:
        raw.close()


async def test_the_bootstrap_token_job_registers_the_join_token(rendered: Rendered) -> None:
    """The Job's step with the ``edgebus-admin`` Secret's files: the token the edge pods hold
    (``edgebus-join``) is then a stored bootstrap token; a second run changes nothing."""
    admin = rendered.root / "files" / k8s.ADMIN_SECRET
    rendered.file(k8s.ADMIN_SECRET, "users/admin.creds")
    rendered.file(k8s.ADMIN_SECRET, "ca.crt")
    seed = rendered.file(k8s.ADMIN_SECRET, "bootstrap-token.json")
    url = f"tls://localhost:{rendered.client}"
    assert await k8s_token(seed, pki_dir=admin, url=url, retry_for=10)
    assert not await k8s_token(seed, pki_dir=admin, url=url, retry_for=10)
    from edgebus.bus import Bus, BusAuth
    from edgebus.identity.tokens import Token
    from edgebus.objects import SECRETS
    from edgebus.objectstore import ObjectStore

    bus = Bus(url, name="test-k8s", auth=BusAuth(creds_file=str(admin / "users" / "admin.creds"), ca_file=str(admin / "ca.crt")))
    await bus.connect(retry_for=10)
    try:
        tok = Token.parse(rendered.secrets[k8s.JOIN_SECRET]["token"])
        stored = await ObjectStore(bus).get(SECRETS, "kube-system", tok.secret_name())
        assert stored["type"] == "bootstrap.kubernetes.io/token"
    finally:
        await bus.close()
