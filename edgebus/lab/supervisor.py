"""The lab's supervisor: starts the plan's processes in order, waits until each is ready,
restarts one that crashes, and takes commands on a Unix socket (``edgebus node stop|start``,
``edgebus down``). ``lab.json`` in the data dir tells the CLI where everything is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from edgebus import names
from edgebus.backoff import delay_for
from edgebus.cri import CriClient, CriError, remove_all
from edgebus.cri.containerd import kill_shims, prepare_dirs
from edgebus.wasm.runtime import kill_workers
from edgebus.images import lab_images
from edgebus.identity.cloud import CloudPki
from edgebus.identity.join import join
from edgebus.identity.tokens import Token, secret_object
from edgebus.lab.plan import ProcSpec, LabPlan
from edgebus.proc import parent_death_signal
from edgebus.runtime.settings import is_setting_variable

log = logging.getLogger("edgebus.lab")


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
    ready: bool = False
    #: the cloud's CA bundle, and an admin's NATS credentials (the CLI's defaults)
    ca_file: str | None = None
    admin_creds: str | None = None
    api_token_file: str | None = None
    #: the web console (served by the apiserver; sign in with the admin token)
    console: str | None = None
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    processes: list[dict[str, Any]] = field(default_factory=list)


class Lab:
    def __init__(self, plan: LabPlan, *, die_with_supervisor: bool = False, cgroups: dict[str, str] | None = None) -> None:
        self.plan = plan
        #: children get SIGTERM if the supervisor dies (tests: an interrupted run leaves nothing)
        self.die_with_supervisor = die_with_supervisor
        #: process name -> the cgroup dir (e.g. a memory cgroup) it runs in, from its exec on
        self.cgroups = cgroups or {}
        self.procs: dict[str, Proc] = {p.name: Proc(p) for p in plan.processes()}
        self.data = Path(plan.data_dir)
        self.sock_path = self.data / "lab.sock"
        self.state_path = self.data / "lab.json"
        self._stop = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self.ready = False
        #: per node: the task starting and stopping its on-demand processes
        self._demand: dict[str, asyncio.Task[None]] = {}
        #: per node: the on-demand services it needs now
        self.wanted: dict[str, set[str]] = {}

    # -- processes --------------------------------------------------------------------
    def _spawn(self, p: Proc) -> None:
        spec = p.spec
        Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
        text = spec.config()
        if spec.config_file and text is not None:
            Path(spec.config_file).parent.mkdir(parents=True, exist_ok=True)
            Path(spec.config_file).write_text(text)
        # settings come from the plan only: an EDGEBUS_* setting of the calling shell is
        # not passed on (it would reach every service, also those it is unknown to)
        inherited = {k: v for k, v in os.environ.items() if not is_setting_variable(k)}
        env = {**inherited, **spec.env, "PYTHONUNBUFFERED": "1"}
        logf = open(spec.log, "ab")
        p.popen = subprocess.Popen(
            spec.argv,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]),
            preexec_fn=self._preexec(spec),
        )
        logf.close()
        p.started_at = time.monotonic()
        log.info("started %s (pid %d)", spec.name, p.popen.pid)

    def _preexec(self, spec: ProcSpec) -> Any:
        cgroup = self.cgroups.get(spec.name)
        if cgroup is None and not self.die_with_supervisor:
            return None

        def preexec() -> None:  # in the child, before exec
            if self.die_with_supervisor:
                parent_death_signal()
            if cgroup is not None:
                Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))

        return preexec

    async def _wait_ready(self, p: Proc, timeout: float = 30.0) -> None:
        spec = p.spec
        deadline = time.monotonic() + timeout
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=self.plan.tls_ca_file) if self.plan.tls_ca_file else True
        async with httpx.AsyncClient(timeout=1.0, verify=verify) as client:
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
        """Start a group's processes (its servers first); on-demand ones only once the node
        needs them (:meth:`_follow_demand`)."""
        if group in self.plan.nodes and self.plan.secure and self.plan.run_cloud:
            await self.join_nodes([group])  # a node that joins later (no-op once joined)
        procs = [p for p in self.procs.values() if p.spec.group == group and not p.spec.on_demand]
        for p in procs:
            p.wanted = True
            if p.popen is None or p.popen.poll() is not None:
                self._spawn(p)
            if _is_server(p.spec) and wait:  # servers before the services that use them
                await self._wait_ready(p)
        if wait:
            await asyncio.gather(*(self._wait_ready(p) for p in procs if not _is_server(p.spec)))
        if any(p.spec.group == group and p.spec.on_demand for p in self.procs.values()) and group not in self._demand:
            self._demand[group] = asyncio.create_task(self._follow_demand(group), name=f"demand:{group}")
        self.write_state()

    async def _follow_demand(self, node: str) -> None:
        """Start a node's on-demand processes while it needs them (a mapper while a Device
        of its protocol is bound to the node, edgemesh while it has Services), stop them
        when it no longer does."""
        from edgebus.allinone.ondemand import Demand
        from edgebus.metaclient import MetaClient

        on_demand = {p.spec.name.split("/", 1)[1]: p for p in self.procs.values() if p.spec.group == node and p.spec.on_demand}

        async def apply(wanted: set[str]) -> None:
            self.wanted[node] = wanted
            for svc, p in on_demand.items():
                if svc in wanted and not p.wanted:
                    p.wanted = True
                    if p.popen is None or p.popen.poll() is not None:
                        self._spawn(p)
                elif svc not in wanted and p.wanted:
                    p.wanted = False
                    if p.popen is not None and p.popen.poll() is None:
                        p.popen.send_signal(signal.SIGTERM)
            self.write_state()

        bus = self.plan.node_bus(node, "edgebus-lab-demand")
        demand = Demand(MetaClient(bus, node, source="lab"), on_demand, apply, linger=self.plan.on_demand_linger)
        bus.on_state(lambda up: demand.relist() if up else None)
        try:
            await bus.connect()
            while True:
                try:
                    await demand.run()
                except Exception:
                    log.exception("following what %s needs failed; again in 1s", node)
                    await asyncio.sleep(1.0)
        finally:
            await bus.close()

    async def stop_group(self, group: str, *, timeout: float = 10.0, remove_pods: bool = False) -> None:
        """SIGTERM the group's processes (services first, its servers last). A node's
        containers are stopped before its containerd, as a power-off does (and removed
        with ``remove_pods``, so ``edgebus down`` leaves no container behind)."""
        demand = self._demand.pop(group, None)
        if demand is not None:
            demand.cancel()
            await asyncio.gather(demand, return_exceptions=True)
        self.wanted.pop(group, None)
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
                    delay = delay_for(p.restarts, 0.5, 10.0)
                    log.warning("%s exited with %s; restarting in %.1fs (restart %d)", p.spec.name, code, delay, p.restarts)
                    p.popen = None
                    asyncio.get_running_loop().call_later(delay, self._respawn, p)

    def _respawn(self, p: Proc) -> None:
        if p.wanted and p.popen is None and not self._stop.is_set():
            self._spawn(p)
            self.write_state()

    async def join_nodes(self, nodes: list[str] | None = None) -> None:
        """Join every node (of ``nodes``) that has no credential yet, exactly as a real node
        does: a bootstrap token (one use per node, valid for an hour) and ``edgebus node
        join``'s HTTPS exchange with the apiserver."""
        todo = [n for n in (nodes if nodes is not None else self.plan.nodes) if not self.plan.node_identity(n).joined]
        if not todo:
            return
        token = await create_token(self.plan, uses=len(todo), ttl=3600.0, description="edgebus lab")
        for n in todo:
            await asyncio.to_thread(join, self.plan.apiserver_url, str(token), n, self.plan.node_identity(n))
            log.info("node %s joined", n)

    # -- state and control ------------------------------------------------------------
    def state(self) -> LabState:
        st = LabState(
            supervisor_pid=os.getpid(),
            data_dir=str(self.data),
            apiserver=self.plan.apiserver_url,
            cloud_nats=",".join(self.plan.cloud_nats_urls),
            ready=self.ready,
            ca_file=self.plan.ca_file,
            admin_creds=str(CloudPki(self.plan.cloud_pki_dir).creds_file("admin")) if self.plan.secure else None,
            api_token_file=str(self.plan.cloud_pki_dir / "admin.token") if self.plan.secure else None,
            console=self.plan.console_url,
        )
        for n in self.plan.nodes:
            st.nodes[n] = {
                "nats": self.plan.node_nats_url(n),
                "mqtt": f"mqtt://{self.plan.host}:{self.plan.node_mqtt_port(n)}",
                "domain": names.node_domain(n),
                "metaserver": f"http://{self.plan.host}:{self.plan.metaserver_port(n)}",
                "dns": "{}:{}".format(*self.plan.mesh_dns(n)),
                "logs": str(self.data / "logs" / n),
                "identity": str(self.plan.node_identity(n).dir),
            }
            if self.plan.secure:
                ident = self.plan.node_identity(n)
                st.nodes[n]["metaserver"] = f"https://{self.plan.host}:{self.plan.metaserver_port(n)}"
                st.nodes[n]["admin_token_file"] = str(ident.admin_token_file)
                st.nodes[n]["metaserver_ca_file"] = str(ident.metaserver_ca_file)
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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(asdict(self.state()), indent=2))
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
    async def up(self, *, nodes: list[str] | None = None) -> None:
        """Start the cloud and the nodes (only ``nodes``, when given: the others join later
        with :meth:`start_group`)."""
        self.data.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data.chmod(0o700)
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
        await asyncio.to_thread(self.plan.prepare)
        if self.plan.run_cloud:
            await self.start_group("cloud")
            if self.plan.secure:
                await self.join_nodes(nodes)  # the others join when they start
        for n in self.plan.nodes:
            if nodes is None or n in nodes:
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
            kill_workers(Path(self.plan.data_dir, "nodes", n))  # Wasm pods (they outlive edged)
            if self.plan.use_containerd:
                shutil.rmtree(self.plan.node_containerd(n).run_dir, ignore_errors=True)
        if self.plan.run_cloud:
            await self.stop_group("cloud")
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.sock_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()


async def create_token(plan: LabPlan, *, uses: int | None, ttl: float | None, description: str = "") -> Token:
    """A bootstrap token in the lab's cloud (as ``edgebus token create`` makes one)."""
    import datetime as dt

    from edgebus.bus import Bus, BusAuth
    from edgebus.objects import SECRETS
    from edgebus.objectstore import ObjectStore

    p = CloudPki(plan.cloud_pki_dir)
    bus = Bus(plan.cloud_nats_urls, name="edgebus-lab", auth=BusAuth(creds_file=str(p.creds_file("admin")), ca_file=plan.tls_ca_file))
    await bus.connect(retry_for=30)
    try:
        store = ObjectStore(bus)
        await store.ensure()
        await store.ensure_system_namespaces()
        tok = Token.new(p.info["caPin"])
        await store.create(SECRETS, secret_object(tok, ttl=dt.timedelta(seconds=ttl) if ttl else None, uses=uses, description=description))
        return tok
    finally:
        await bus.close()


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
