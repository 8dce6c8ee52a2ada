"""The lab: a cloud and N edge nodes on one machine, every module its own process.

:class:`LabPlan` decides ports, directories and the exact command and environment of
every process (the docker-compose file and the Kubernetes manifests describe the same
processes). :class:`Lab` starts them in order, waits until each is ready, restarts one
that crashes, and takes commands on a Unix socket (``edgebus node stop|start``,
``edgebus down``). ``lab.json`` in the data dir tells the CLI where everything is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgebus import names
from edgebus.natsd import HubConfig, LeafConfig, nats_server_binary
from edgebus.runtime.settings import to_env

log = logging.getLogger("edgebus.lab")

DEFAULT_DIR = Path(os.environ.get("EDGEBUS_LAB_DIR", str(Path.home() / ".edgebus" / "lab")))
DEFAULT_BASE_PORT = 14200
CLOUD_SERVICES = ("apiserver", "cloudhub", "edgecontroller")
EDGE_SERVICES = ("edgehub", "metamanager")


@dataclass
class ProcSpec:
    """One process of the lab."""

    name: str  # e.g. "cloud/apiserver", "edge-1/nats"
    group: str  # "cloud" or a node name
    argv: list[str]
    env: dict[str, str]
    log: str
    ready_url: str | None = None  # HTTP readiness probe
    ready_port: int | None = None  # TCP readiness (nats-server)
    config_file: str | None = None
    config_text: str | None = None


@dataclass
class LabPlan:
    data_dir: str
    nodes: list[str]
    base_port: int = DEFAULT_BASE_PORT
    host: str = "127.0.0.1"
    token: str = ""
    grace: float = 40.0
    heartbeat: float = 10.0
    status_interval: float = 60.0
    log_level: str = "INFO"
    #: per node, the hub leafnode URL it dials when not the hub's own (a NAT, a proxy)
    leaf_urls: dict[str, str] = field(default_factory=dict)

    # -- ports ------------------------------------------------------------------------
    @property
    def cloud_nats_port(self) -> int:
        return self.base_port

    @property
    def cloud_leaf_port(self) -> int:
        return self.base_port + 1

    @property
    def apiserver_port(self) -> int:
        return self.base_port + 2

    def cloud_ops_port(self, service: str) -> int:
        return self.base_port + 3 + CLOUD_SERVICES.index(service)

    def node_base(self, node: str) -> int:
        return self.base_port + 10 * (self.nodes.index(node) + 1)

    def node_nats_port(self, node: str) -> int:
        return self.node_base(node)

    def node_mqtt_port(self, node: str) -> int:
        return self.node_base(node) + 1

    def node_ops_port(self, node: str, service: str) -> int:
        return self.node_base(node) + 2 + EDGE_SERVICES.index(service)

    def all_ports(self) -> list[int]:
        ports = [self.cloud_nats_port, self.cloud_leaf_port, self.apiserver_port]
        ports += [self.cloud_ops_port(s) for s in CLOUD_SERVICES if s != "apiserver"]
        for n in self.nodes:
            ports += [self.node_nats_port(n), self.node_mqtt_port(n)]
            ports += [self.node_ops_port(n, s) for s in EDGE_SERVICES]
        return ports

    # -- urls -------------------------------------------------------------------------
    @property
    def cloud_nats_url(self) -> str:
        return f"nats://{self.host}:{self.cloud_nats_port}"

    @property
    def apiserver_url(self) -> str:
        return f"http://{self.host}:{self.apiserver_port}"

    def node_nats_url(self, node: str) -> str:
        return f"nats://{self.host}:{self.node_nats_port(node)}"

    # -- processes ----------------------------------------------------------------------
    def _dir(self, *parts: str) -> Path:
        return Path(self.data_dir, *parts)

    def _service(self, group: str, service: str, settings: dict[str, Any], ops_port: int, ready_url: str | None = None) -> ProcSpec:
        env = to_env({"log": {"level": self.log_level}, "ops": {"host": self.host, "port": ops_port}, **settings})
        return ProcSpec(
            name=f"{group}/{service}",
            group=group,
            argv=[sys.executable, "-m", f"services.{service}"],
            env=env,
            log=str(self._dir("logs", group, f"{service}.log")),
            ready_url=ready_url or f"http://{self.host}:{ops_port}/readyz",
        )

    def cloud_processes(self) -> list[ProcSpec]:
        hub = HubConfig(
            store_dir=str(self._dir("cloud", "nats", "js")),
            port=self.cloud_nats_port,
            leaf_port=self.cloud_leaf_port,
            host=self.host,
        )
        conf = str(self._dir("cloud", "nats", "nats.conf"))
        nats = ProcSpec(
            name="cloud/nats",
            group="cloud",
            argv=[nats_server_binary(), "-c", conf],
            env={},
            log=str(self._dir("logs", "cloud", "nats.log")),
            ready_port=self.cloud_nats_port,
            config_file=conf,
            config_text=hub.render(),
        )
        nats_settings = {"nats": {"url": self.cloud_nats_url}}
        api = self._service(
            "cloud",
            "apiserver",
            {**nats_settings, "apiserver": {"host": self.host, "port": self.apiserver_port}},
            0,
            ready_url=f"{self.apiserver_url}/readyz",
        )
        hubsvc = self._service(
            "cloud",
            "cloudhub",
            {**nats_settings, "cloudhub": {"node_grace_period": self.grace, "bootstrap_tokens": json.dumps([self.token])}},
            self.cloud_ops_port("cloudhub"),
        )
        ctl = self._service("cloud", "edgecontroller", nats_settings, self.cloud_ops_port("edgecontroller"))
        return [nats, api, hubsvc, ctl]

    def node_processes(self, node: str) -> list[ProcSpec]:
        leaf = LeafConfig(
            name=node,
            domain=names.node_domain(node),
            store_dir=str(self._dir("nodes", node, "nats", "js")),
            port=self.node_nats_port(node),
            hub_urls=[self.leaf_urls.get(node) or f"nats-leaf://{self.host}:{self.cloud_leaf_port}"],
            host=self.host,
            mqtt_port=self.node_mqtt_port(node),
        )
        conf = str(self._dir("nodes", node, "nats", "nats.conf"))
        nats = ProcSpec(
            name=f"{node}/nats",
            group=node,
            argv=[nats_server_binary(), "-c", conf],
            env={},
            log=str(self._dir("logs", node, "nats.log")),
            ready_port=self.node_nats_port(node),
            config_file=conf,
            config_text=leaf.render(),
        )
        base = {"node": node, "nats": {"url": self.node_nats_url(node), "ping_interval": 2}}
        hub = self._service(
            node,
            "edgehub",
            {**base, "edgehub": {"join_token": self.token, "heartbeat_interval": self.heartbeat, "status_interval": self.status_interval, "internal_ip": self.host}},
            self.node_ops_port(node, "edgehub"),
        )
        mm = self._service(
            node,
            "metamanager",
            {**base, "metamanager": {"data_dir": str(self._dir("nodes", node, "metamanager"))}},
            self.node_ops_port(node, "metamanager"),
        )
        return [nats, mm, hub]

    def processes(self) -> list[ProcSpec]:
        out = self.cloud_processes()
        for n in self.nodes:
            out += self.node_processes(n)
        return out


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


@dataclass
class Proc:
    spec: ProcSpec
    popen: subprocess.Popen[bytes] | None = None
    wanted: bool = True
    restarts: int = 0
    started_at: float = 0.0


@dataclass
class LabState:
    """What ``lab.json`` holds."""

    supervisor_pid: int
    data_dir: str
    apiserver: str
    cloud_nats: str
    token: str
    ready: bool = False
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: list[dict[str, Any]] = field(default_factory=list)


class Lab:
    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self.procs: dict[str, Proc] = {p.name: Proc(p) for p in plan.processes()}
        self.data = Path(plan.data_dir)
        self.sock_path = self.data / "lab.sock"
        self.state_path = self.data / "lab.json"
        self._stop = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self.ready = False

    # -- processes --------------------------------------------------------------------
    def _spawn(self, p: Proc) -> None:
        spec = p.spec
        Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
        if spec.config_file and spec.config_text is not None:
            Path(spec.config_file).parent.mkdir(parents=True, exist_ok=True)
            Path(spec.config_file).write_text(spec.config_text)
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        logf = open(spec.log, "ab")
        p.popen = subprocess.Popen(spec.argv, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(Path(__file__).resolve().parent.parent))
        logf.close()
        p.started_at = time.monotonic()
        log.info("started %s (pid %d)", spec.name, p.popen.pid)

    async def _wait_ready(self, p: Proc, timeout: float = 30.0) -> None:
        spec = p.spec
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if p.popen is not None and p.popen.poll() is not None:
                    raise RuntimeError(f"{spec.name} exited with code {p.popen.returncode}; see {spec.log}")
                try:
                    if spec.ready_port:
                        _, w = await asyncio.open_connection(self.plan.host, spec.ready_port)
                        w.close()
                        return
                    if spec.ready_url:
                        r = await client.get(spec.ready_url)
                        if r.status_code == 200:
                            return
                except (OSError, httpx.HTTPError):
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{spec.name} not ready after {timeout:.0f}s; see {spec.log}")

    async def start_group(self, group: str, *, wait: bool = True) -> None:
        procs = [p for p in self.procs.values() if p.spec.group == group]
        for p in procs:
            p.wanted = True
            if p.popen is None or p.popen.poll() is not None:
                self._spawn(p)
            if p.spec.ready_port and wait:  # servers before the services that use them
                await self._wait_ready(p)
        if wait:
            await asyncio.gather(*(self._wait_ready(p) for p in procs if not p.spec.ready_port))
        self.write_state()

    async def stop_group(self, group: str, *, timeout: float = 10.0) -> None:
        """SIGTERM the group's processes (services first, its nats-server last)."""
        procs = [p for p in self.procs.values() if p.spec.group == group]
        for p in procs:
            p.wanted = False
        services = [p for p in procs if not p.spec.ready_port]
        servers = [p for p in procs if p.spec.ready_port]
        for batch in (services, servers):
            for p in batch:
                if p.popen is not None and p.popen.poll() is None:
                    p.popen.send_signal(signal.SIGTERM)
            for p in batch:
                await self._reap(p, timeout)
        self.write_state()

    async def _reap(self, p: Proc, timeout: float) -> None:
        if p.popen is None:
            return
        deadline = time.monotonic() + timeout
        while p.popen.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if p.popen.poll() is None:
            log.warning("%s did not stop in %.0fs; killing", p.spec.name, timeout)
            p.popen.kill()
            p.popen.wait(5)

    async def _watchdog(self) -> None:
        """Restart processes that died while wanted (like restartPolicy: Always)."""
        while not self._stop.is_set():
            await asyncio.sleep(0.5)
            for p in self.procs.values():
                if p.wanted and p.popen is not None and p.popen.poll() is not None:
                    code = p.popen.returncode
                    p.restarts += 1
                    delay = min(0.5 * 2 ** min(p.restarts, 5), 10.0)
                    log.warning("%s exited with %s; restarting in %.1fs (restart %d)", p.spec.name, code, delay, p.restarts)
                    p.popen = None
                    asyncio.get_running_loop().call_later(delay, self._respawn, p)

    def _respawn(self, p: Proc) -> None:
        if p.wanted and p.popen is None and not self._stop.is_set():
            self._spawn(p)
            self.write_state()

    # -- state and control ------------------------------------------------------------
    def state(self) -> LabState:
        st = LabState(
            supervisor_pid=os.getpid(),
            data_dir=str(self.data),
            apiserver=self.plan.apiserver_url,
            cloud_nats=self.plan.cloud_nats_url,
            token=self.plan.token,
            ready=self.ready,
        )
        for n in self.plan.nodes:
            st.nodes[n] = {
                "nats": self.plan.node_nats_url(n),
                "mqtt": f"mqtt://{self.plan.host}:{self.plan.node_mqtt_port(n)}",
                "domain": names.node_domain(n),
                "logs": str(self.data / "logs" / n),
            }
        for p in self.procs.values():
            alive = p.popen is not None and p.popen.poll() is None
            st.processes.append(
                {"name": p.spec.name, "pid": p.popen.pid if alive and p.popen else None, "running": alive, "wanted": p.wanted, "restarts": p.restarts, "log": p.spec.log}
            )
        return st

    def write_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.state()), indent=2))
        tmp.replace(self.state_path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            req = json.loads(line or b"{}")
            cmd = req.get("cmd")
            node = req.get("node")
            if cmd in ("stop-node", "start-node") and node not in self.plan.nodes:
                resp: dict[str, Any] = {"ok": False, "error": f"no node {node!r} in this lab (nodes: {', '.join(self.plan.nodes)})"}
            elif cmd == "stop-node":
                await self.stop_group(node)
                resp = {"ok": True}
            elif cmd == "start-node":
                await self.start_group(node)
                resp = {"ok": True}
            elif cmd == "status":
                resp = {"ok": True, "state": asdict(self.state())}
            elif cmd == "down":
                self._stop.set()
                resp = {"ok": True}
            else:
                resp = {"ok": False, "error": f"unknown command {cmd!r}"}
        except Exception as exc:
            resp = {"ok": False, "error": str(exc)}
        writer.write(json.dumps(resp).encode() + b"\n")
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()

    # -- lifecycle --------------------------------------------------------------------
    async def up(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        busy = [p for p in self.plan.all_ports() if not port_free(self.plan.host, p)]
        if busy:
            raise RuntimeError(f"ports already in use: {busy} (another lab running? try `edgebus down` or --base-port)")
        if self.sock_path.exists():
            self.sock_path.unlink()
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.sock_path))
        self.write_state()
        await self.start_group("cloud")
        for n in self.plan.nodes:
            await self.start_group(n)
        self.ready = True
        self.write_state()

    async def run(self, *, on_ready: Any = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        watchdog: asyncio.Task[None] | None = None
        try:
            await self.up()
            if on_ready is not None:
                on_ready(self)
            watchdog = asyncio.create_task(self._watchdog())
            await self._stop.wait()
        finally:
            if watchdog is not None:
                watchdog.cancel()
            await self.down()

    async def down(self) -> None:
        self.ready = False
        for n in reversed(self.plan.nodes):
            await self.stop_group(n)
        await self.stop_group("cloud")
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()


def new_token() -> str:
    return secrets.token_hex(16)


def load_state(data_dir: str | Path) -> dict[str, Any] | None:
    p = Path(data_dir) / "lab.json"
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError):
        return None


def control(data_dir: str | Path, cmd: str, **kw: Any) -> dict[str, Any]:
    """Send a command to a running lab supervisor."""
    path = str(Path(data_dir) / "lab.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(120)
        s.connect(path)
        s.sendall(json.dumps({"cmd": cmd, **kw}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return dict(json.loads(buf or b"{}"))
