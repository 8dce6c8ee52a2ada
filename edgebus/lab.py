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
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from edgebus import names
from edgebus.cri import CriClient, CriError, remove_all
from edgebus.cri.containerd import ContainerdConfig, containerd_binary, kill_shims, prepare_dirs, usable
from edgebus.images import BUSYBOX_IMAGE, PAUSE_IMAGE, archive_path, lab_images
from edgebus.natsd import HubConfig, LeafConfig, nats_server_binary
from edgebus.runtime.settings import to_env

log = logging.getLogger("edgebus.lab")

DEFAULT_DIR = Path(os.environ.get("EDGEBUS_LAB_DIR", str(Path.home() / ".edgebus" / "lab")))
DEFAULT_BASE_PORT = 14200
#: the metaserver's port in each node's 10-port block
METASERVER_SLOT = 9
CLOUD_SERVICES = ("apiserver", "cloudhub", "edgecontroller", "devicecontroller")
EDGE_SERVICES = ("edgehub", "metamanager")
#: Device services of every node, each at a fixed offset in the node's 10-port block (its
#: ops port); the first node also runs a simulated Modbus thermostat at SIM_MODBUS_SLOT.
DEVICE_SERVICES = {"devicetwin": 5, "mappers.modbus": 6, "mappers.opcua": 7}
SIM_MODBUS_SLOT = 8
#: edged's ops port in each node's block; the node's private containerd has no TCP port
EDGED_SLOT = 4


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
    ready_socket: str | None = None  # Unix socket readiness (containerd)
    #: a container runtime: its pods are stopped before it (and removed on ``down``)
    cri_address: str | None = None
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
    #: run devicecontroller, devicetwin and the mappers, and the simulated Modbus device
    devices: bool = True
    #: a private containerd per node: None = when possible (root, containerd installed)
    containerd: bool | None = None
    #: where the lab's OCI image archives are (None: the user's cache, see edgebus.images)
    image_cache: str | None = None
    #: cloud services to run as several processes, e.g. {"edgecontroller": 2}
    replicas: dict[str, int] = field(default_factory=dict)

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

    def metaserver_port(self, node: str) -> int:
        """The node's metaserver: kubectl against the node's own store."""
        return self.node_base(node) + METASERVER_SLOT

    def node_ops_port(self, node: str, service: str) -> int:
        if service in DEVICE_SERVICES:
            return self.node_base(node) + DEVICE_SERVICES[service]
        return self.node_base(node) + 2 + EDGE_SERVICES.index(service)

    def edged_ops_port(self, node: str) -> int:
        return self.node_base(node) + EDGED_SLOT

    @property
    def use_containerd(self) -> bool:
        if self.containerd is None:
            return usable() is None
        return self.containerd

    def node_containerd(self, node: str) -> ContainerdConfig:
        return ContainerdConfig(str(self._dir("nodes", node, "containerd")))

    def sim_modbus_port(self, node: str) -> int | None:
        """The simulated Modbus thermostat's port (the first node only)."""
        return self.node_base(node) + SIM_MODBUS_SLOT if self.devices and node == self.nodes[0] else None

    def all_ports(self) -> list[int]:
        ports = [self.cloud_nats_port, self.cloud_leaf_port, self.apiserver_port]
        ports += [self.cloud_ops_port(s) for s in CLOUD_SERVICES if s != "apiserver" and (self.devices or s != "devicecontroller")]
        for n in self.nodes:
            ports += [self.node_nats_port(n), self.node_mqtt_port(n), self.metaserver_port(n)]
            ports += [self.node_ops_port(n, s) for s in EDGE_SERVICES]
            ports.append(self.edged_ops_port(n))
            if self.devices:
                ports += [self.node_ops_port(n, s) for s in DEVICE_SERVICES]
                sim = self.sim_modbus_port(n)
                ports += [sim] if sim else []
        ports += [self.replica_port(svc, k) for svc, n in self.replicas.items() for k in range(2, n + 1)]
        return ports

    @property
    def internal_ip(self) -> str:
        """The address nodes report as their InternalIP ("" = their resolved hostname)."""
        return self.host

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
        if not self.devices:
            return [nats, api, hubsvc, ctl]
        devctl = self._service("cloud", "devicecontroller", nats_settings, self.cloud_ops_port("devicecontroller"))
        return [nats, api, hubsvc, ctl, devctl]

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
            {**base, "edgehub": {"join_token": self.token, "heartbeat_interval": self.heartbeat, "status_interval": self.status_interval, "internal_ip": self.internal_ip}},
            self.node_ops_port(node, "edgehub"),
        )
        mm = self._service(
            node,
            "metamanager",
            {**base, "metamanager": {"data_dir": str(self._dir("nodes", node, "metamanager")), "metaserver_host": self.host, "metaserver_port": self.metaserver_port(node)}},
            self.node_ops_port(node, "metamanager"),
        )
        procs = [nats, *self.runtime_processes(node), mm, hub, self.edged_process(node, base)]
        if not self.devices:
            return procs
        return [*procs, *self.device_processes(node, base)]

    def runtime_processes(self, node: str) -> list[ProcSpec]:
        """The node's private containerd (root, sockets and runc state of its own)."""
        if not self.use_containerd:
            return []
        cfg = self.node_containerd(node)
        return [
            ProcSpec(
                name=f"{node}/containerd",
                group=node,
                argv=[containerd_binary() or "containerd", "--config", str(cfg.config_path)],
                env={},
                log=str(self._dir("logs", node, "containerd.log")),
                ready_socket=cfg.socket,
                config_file=str(cfg.config_path),
                config_text=cfg.render(),
                cri_address=cfg.address,
            )
        ]

    def edged_process(self, node: str, base: dict[str, Any]) -> ProcSpec:
        """edged, with the lab's images preloaded (busybox, and the sandbox image)."""
        cache = {"cache": Path(self.image_cache)} if self.image_cache else {}
        images = [str(archive_path(name, **cache)) for name in (BUSYBOX_IMAGE, PAUSE_IMAGE)]
        return self._service(
            node,
            "edged",
            {
                **base,
                "edged": {
                    "containerd": self.node_containerd(node).address,
                    "data_dir": str(self._dir("nodes", node, "edged")),
                    "internal_ip": self.internal_ip,
                    "status_interval": self.status_interval,
                    "preload_images": json.dumps(images),
                },
            },
            self.edged_ops_port(node),
        )

    def device_processes(self, node: str, base: dict[str, Any]) -> list[ProcSpec]:
        out = []
        sim = self.sim_modbus_port(node)
        if sim:
            out.append(
                ProcSpec(
                    name=f"{node}/modbus-sim",
                    group=node,
                    argv=[sys.executable, "-m", "edgebus.cli.main", "device", "simulate", "modbus", "--host", self.host, "--port", str(sim)],
                    env={},
                    log=str(self._dir("logs", node, "modbus-sim.log")),
                    ready_port=sim,
                )
            )
        out.append(self._service(node, "devicetwin", {**base, "devicetwin": {"data_dir": str(self._dir("nodes", node, "devicetwin"))}}, self.node_ops_port(node, "devicetwin")))
        for mapper in ("mappers.modbus", "mappers.opcua"):
            out.append(self._service(node, mapper, base, self.node_ops_port(node, mapper)))
        return out

    def processes(self) -> list[ProcSpec]:
        out = self.replicated(self.cloud_processes())
        for n in self.nodes:
            out += self.node_processes(n)
        return out

    def replica_port(self, service: str, replica: int, which: int = 0) -> int:
        """Ports of extra replicas (2, 3, ...) of a cloud service: a block from base + 100."""
        return self.base_port + 100 + 10 * (replica - 2) + 2 * sorted(self.replicas).index(service) + which

    def replicated(self, procs: list[ProcSpec]) -> list[ProcSpec]:
        """Cloud services with ``replicas[service] > 1`` run as that many processes
        (``cloud/<service>-2``, ...), each with its own ports, exactly as they scale elsewhere."""
        out = list(procs)
        for spec in procs:
            svc = spec.argv[-1].removeprefix("services.") if "-m" in spec.argv else ""
            for k in range(2, self.replicas.get(svc, 1) + 1):
                env = dict(spec.env)
                ops = self.replica_port(svc, k)
                ready = f"http://{self.host}:{ops}/readyz"
                if env.get("EDGEBUS_APISERVER__PORT"):
                    env["EDGEBUS_APISERVER__PORT"] = str(ops)
                else:
                    env["EDGEBUS_OPS__PORT"] = str(ops)
                out.append(replace(spec, name=f"cloud/{svc}-{k}", env=env, log=spec.log.replace(".log", f"-{k}.log"), ready_url=ready))
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
                    if spec.ready_socket:
                        _, w = await asyncio.open_unix_connection(spec.ready_socket)
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
            if _is_server(p.spec) and wait:  # servers before the services that use them
                await self._wait_ready(p)
        if wait:
            await asyncio.gather(*(self._wait_ready(p) for p in procs if not _is_server(p.spec)))
        self.write_state()

    async def stop_group(self, group: str, *, timeout: float = 10.0, remove_pods: bool = False) -> None:
        """SIGTERM the group's processes (services first, its servers last). A node's
        containers are stopped before its containerd, as a power-off does (and removed
        with ``remove_pods``, so ``edgebus down`` leaves no container behind)."""
        procs = [p for p in self.procs.values() if p.spec.group == group]
        for p in procs:
            p.wanted = False
        services = [p for p in procs if not _is_server(p.spec)]
        servers = [p for p in procs if _is_server(p.spec)]
        for batch in (services, servers):
            for p in batch:
                if p.spec.cri_address and p.popen is not None and p.popen.poll() is None:
                    await _stop_pods(p.spec.cri_address, remove=remove_pods)
            for p in batch:
                if p.popen is not None and p.popen.poll() is None:
                    p.popen.send_signal(signal.SIGTERM)
            for p in batch:
                await self._reap(p, timeout)
                if p.spec.cri_address:
                    kill_shims(p.spec.cri_address)
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
                "metaserver": f"http://{self.plan.host}:{self.plan.metaserver_port(n)}",
                "logs": str(self.data / "logs" / n),
            }
            sim = self.plan.sim_modbus_port(n)
            if sim:
                st.nodes[n]["modbus_sim"] = f"{self.plan.host}:{sim}"
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
        if self.plan.use_containerd:
            try:
                await asyncio.to_thread(lab_images)
            except Exception as exc:  # pods will show ErrImagePull; the lab still runs
                log.warning("lab images not built: %s", exc)
            for n in self.plan.nodes:
                prepare_dirs(self.plan.node_containerd(n))
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
            await self.stop_group(n, remove_pods=True)
            if self.plan.use_containerd:
                shutil.rmtree(self.plan.node_containerd(n).run_dir, ignore_errors=True)
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


def _is_server(spec: ProcSpec) -> bool:
    return bool(spec.ready_port or spec.ready_socket)


async def _stop_pods(address: str, *, remove: bool) -> None:
    cri = CriClient(address, timeout=10)
    try:
        n = await remove_all(cri, None, remove=remove)
        if n:
            log.info("%s %d pod sandboxes at %s", "removed" if remove else "stopped", n, address)
    except CriError as exc:
        log.warning("could not stop the pods at %s: %s", address, exc)
    finally:
        await cri.close()
