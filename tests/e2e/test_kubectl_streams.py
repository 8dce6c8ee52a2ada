"""The real kubectl's streaming commands against a lab whose node runs a private
containerd: an interactive shell on a terminal (driven through a pseudo-terminal), ``exec
-i`` with piped input, ``cp`` both ways, many execs at once, a client killed mid-exec,
an exec of five minutes. kubectl 1.30+ speaks websocket v5 to the apiserver; the node
speaks SPDY to containerd (CRI streaming)."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgebus.testing.containerd import skip_reason
from edgebus.testing.waiting import wait_until

from .kubectl import KUBECTL, BackgroundLab, Kubectl, versioned_kubectls

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(KUBECTL is None, reason="no kubectl binary installed")]

BOX = """
apiVersion: v1
kind: Pod
metadata: {name: box, namespace: default}
spec:
  nodeName: edge-1
  terminationGracePeriodSeconds: 1
  containers:
    - {name: main, image: docker.io/library/busybox:edgebus, command: [sleep, "36000"]}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundLab]:
    why = skip_reason()
    if why:
        pytest.skip(why)
    bl = BackgroundLab(tmp_path_factory.mktemp("kubectl-streams"), proxy=False, devices=False)
    try:
        yield bl
    finally:
        bl.close()


@pytest.fixture(scope="module")
def k(lab: BackgroundLab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    kc = Kubectl(tmp_path_factory.mktemp("kubectl"), "cloud", lab.rl.lab.plan.apiserver_url, ca_file=lab.rl.lab.plan.ca_file, token=lab.rl.lab.plan.admin_token())
    kc.run("apply", "-f", "-", stdin=BOX)
    wait_until(lambda: kc.out("get", "pod", "box", "-o", "jsonpath={.status.phase}") == "Running", timeout=60, msg="box Running")
    return kc


@pytest.fixture(scope="module", autouse=True)
def five_minute_exec(k: Kubectl) -> Iterator[tuple[subprocess.Popen[str], float]]:
    """The five-minute exec runs beside the module's other tests (they do not touch it); its
    test, the module's last, waits for it."""
    t0 = time.monotonic()
    p = subprocess.Popen(streaming(k, "exec", "box", "--", "sh", "-c", "sleep 300; echo after-five-minutes"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield p, t0
    finally:
        if p.poll() is None:
            p.kill()
        p.communicate()


def streaming(k: Kubectl, *args: str) -> list[str]:
    """kubectl's argv without the request timeout (it would cut long streams)."""
    argv = k.argv(*args)
    i = argv.index("--request-timeout")
    return argv[:i] + argv[i + 2 :]


def _on_node(marker: bytes) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read() == marker:
                        out.append(int(d))
            except OSError:
                pass
    return out


class Terminal:
    """kubectl on a pseudo-terminal, as a user at a shell runs it."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = 20.0) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen; got {self.seen[-500:]!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        return self.seen

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def close(self) -> int:
        code = self.proc.wait(timeout=30)
        os.close(self.master)
        return code


@pytest.mark.parametrize("version", ["default", "1.33"])
def test_interactive_shell_on_a_terminal(k: Kubectl, tmp_path: Path, version: str) -> None:
    kc = k if version == "default" else k.other(tmp_path, version, versioned_kubectls()[version])
    t = Terminal(streaming(kc, "exec", "-it", "box", "--", "sh"))
    t.expect(b"# ")
    t.type(b"echo $((6*7))-answer; stty size\r")
    t.expect(b"42-answer")
    t.type(b"cd /tmp && echo typed > note && cat note\r")
    t.expect(b"typed\r\n")
    t.type(b"exit 3\r")
    assert t.close() == 3


def test_exec_with_piped_standard_input(k: Kubectl) -> None:
    data = "line\n" * 50000
    assert k.out("exec", "-i", "box", "--", "sh", "-c", "cat | wc -l").strip() == "0"  # no input: an empty one
    assert k.run("exec", "-i", "box", "--", "sh", "-c", "cat | wc -l", stdin=data).stdout.strip() == "50000"
    cp = k.run("exec", "-i", "box", "--", "sh", "-c", "read x; echo got $x; exit 4", stdin="hello\n", check=False)
    assert cp.returncode == 4 and cp.stdout == "got hello\n"


def test_cp_both_ways(k: Kubectl, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(5 << 20))
    want = hashlib.sha256(src.read_bytes()).hexdigest()
    k.run("cp", str(src), "default/box:/tmp/big.bin")
    assert k.out("exec", "box", "--", "sha256sum", "/tmp/big.bin").split()[0] == want
    back = tmp_path / "back.bin"
    k.run("cp", "default/box:/tmp/big.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).hexdigest() == want


def test_twenty_concurrent_execs_take_about_the_time_of_one(k: Kubectl) -> None:
    t0 = time.monotonic()
    one = subprocess.run(streaming(k, "exec", "box", "--", "sh", "-c", "sleep 3; echo one"), capture_output=True, text=True, timeout=60)
    single = time.monotonic() - t0
    assert one.stdout == "one\n"
    t0 = time.monotonic()
    procs = [subprocess.Popen(streaming(k, "exec", "box", "--", "sh", "-c", f"sleep 3; echo n{i}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(20)]
    outs = [p.communicate(timeout=120) for p in procs]
    elapsed = time.monotonic() - t0
    assert [o for o, _ in outs] == [f"n{i}\n" for i in range(20)], outs
    print(f"\none exec of 'sleep 3': {single:.1f}s; twenty at once: {elapsed:.1f}s")
    assert elapsed < single * 3 + 5, (single, elapsed)  # one at a time would be 20x


def test_client_killed_mid_exec_kills_the_command(k: Kubectl) -> None:
    p = subprocess.Popen(streaming(k, "exec", "box", "--", "sleep", "4343"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = b"sleep\x004343\x00"
    wait_until(lambda: bool(_on_node(marker)), timeout=20, msg="the command runs on the node")
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    wait_until(lambda: not _on_node(marker), timeout=60, msg="the command gone from the node")


def test_attach_to_the_main_process(k: Kubectl) -> None:
    k.run("run", "chatty", "--image", "docker.io/library/busybox:edgebus", "--overrides", '{"spec": {"nodeName": "edge-1"}}', "--", "sh", "-c", "while true; do echo chat; sleep 0.3; done")
    wait_until(lambda: k.out("get", "pod", "chatty", "-o", "jsonpath={.status.phase}") == "Running", timeout=60, msg="chatty Running")
    p = subprocess.Popen(streaming(k, "attach", "chatty"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        got = b""
        deadline = time.monotonic() + 20
        while got.count(b"chat") < 3 and time.monotonic() < deadline:
            got += p.stdout.read1(4096)  # type: ignore[attr-defined]
        assert got.count(b"chat") >= 3, got
    finally:
        p.kill()
        p.wait()
    k.run("delete", "pod", "chatty", "--grace-period=0", "--force")


@pytest.mark.parametrize("version", ["1.27", "1.28"])
def test_spdy_clients_exec_cp_and_a_terminal(k: Kubectl, tmp_path: Path, version: str) -> None:
    """kubectl 1.27/1.28 speak SPDY/3.1 only: the same streams, the same results."""
    binary = versioned_kubectls().get(version)
    if binary is None:
        pytest.skip(f"kubectl {version} not installed")
    old = k.other(tmp_path, version, binary)
    cp = old.run("exec", "box", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert cp.returncode == 3 and cp.stdout == "out\n" and cp.stderr.splitlines()[0] == "err"
    assert old.run("exec", "-i", "box", "--", "sh", "-c", "cat | wc -c", stdin="x" * 300000).stdout.strip() == "300000"
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(1 << 20))
    old.run("cp", str(src), f"default/box:/tmp/{version}.bin")
    back = tmp_path / "back.bin"
    old.run("cp", f"default/box:/tmp/{version}.bin", str(back))
    assert back.read_bytes() == src.read_bytes()
    t = Terminal(streaming(old, "exec", "-it", "box", "--", "sh"))
    t.expect(b"# ")
    t.type(b"echo $((20+22))-spdy\r")
    t.expect(b"42-spdy")
    t.type(b"exit 2\r")
    assert t.close() == 2
    assert old.fails("exec", "nope", "--", "true") == 'Error from server (NotFound): pods "nope" not found'


WEB = """
apiVersion: v1
kind: Pod
metadata: {name: pfweb, namespace: default}
spec:
  nodeName: edge-1
  terminationGracePeriodSeconds: 1
  containers:
    - name: a
      image: docker.io/library/busybox:edgebus
      command: [sh, -c, 'mkdir -p /w && echo page-a > /w/index.html && head -c 1000000 /dev/urandom > /w/blob && httpd -f -p 127.0.0.1:18931 -h /w']
    - name: b
      image: docker.io/library/busybox:edgebus
      command: [sh, -c, 'mkdir -p /w && echo page-b > /w/index.html && httpd -f -p 127.0.0.1:18932 -h /w']
"""


@pytest.mark.parametrize("version", ["1.33", "1.30", "1.27"])
def test_port_forward_several_ports_and_connections(k: Kubectl, tmp_path: Path, version: str) -> None:
    import re
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    if k.run("get", "pod", "pfweb", check=False).returncode != 0:
        k.run("apply", "-f", "-", stdin=WEB)
        wait_until(lambda: k.out("get", "pod", "pfweb", "-o", "jsonpath={.status.phase}") == "Running", timeout=60, msg="pfweb Running")
    kc = k.other(tmp_path, version, versioned_kubectls()[version])
    env = {**os.environ, "KUBECTL_PORT_FORWARD_WEBSOCKETS": "true"}  # 1.30: websockets; 1.31+ by default; 1.27 SPDY
    p = subprocess.Popen(streaming(kc, "port-forward", "pod/pfweb", ":18931", ":18932"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout is not None
        ports: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(ports) < 2 and time.monotonic() < deadline:
            line = p.stdout.readline()
            if m := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line):
                ports[int(m.group(2))] = int(m.group(1))
        if set(ports) != {18931, 18932}:
            p.terminate()
            raise AssertionError(f"kubectl port-forward: {ports} {p.communicate(timeout=10)}")

        def get(port: int, path: str = "/index.html") -> bytes:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports[port]}{path}", timeout=30) as r:
                return bytes(r.read())

        assert get(18931) == b"page-a\n" and get(18932) == b"page-b\n"
        with ThreadPoolExecutor(10) as ex:
            blobs = list(ex.map(lambda _: get(18931, "/blob"), range(10)))
        want = k.out("exec", "pfweb", "-c", "a", "--", "sha256sum", "/w/blob").split()[0]
        assert {hashlib.sha256(b).hexdigest() for b in blobs} == {want}
    finally:
        p.terminate()
        p.wait(timeout=10)


def _millicores(v: str) -> int:
    return int(v[:-1]) if v.endswith("m") else int(float(v) * 1000)


def test_top_numbers_move_when_a_pod_burns_cpu(k: Kubectl) -> None:
    k.run("run", "burner", "--image", "docker.io/library/busybox:edgebus", "--overrides", '{"spec": {"nodeName": "edge-1", "terminationGracePeriodSeconds": 1}}', "--", "sh", "-c", "while true; do :; done")
    wait_until(lambda: k.out("get", "pod", "burner", "-o", "jsonpath={.status.phase}") == "Running", timeout=60, msg="burner Running")
    rows: dict[str, list[str]] = {}

    def measured() -> bool:
        cp = k.run("top", "pod", "--no-headers", check=False)
        rows.clear()
        rows.update({r.split()[0]: r.split() for r in cp.stdout.splitlines() if r.strip()})
        return cp.returncode == 0 and "burner" in rows and "box" in rows and _millicores(rows["burner"][1]) >= 300

    wait_until(measured, timeout=120, interval=3, msg="kubectl top pod shows the burner busy")
    assert _millicores(rows["box"][1]) < 50, rows  # sleeping
    assert rows["burner"][2].endswith("Mi")
    head, nodes = k.table("top", "node")
    assert head == ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"] and nodes[0][0] == "edge-1"
    assert _millicores(nodes[0][1]) >= 300, nodes
    containers = k.out("top", "pod", "burner", "--containers", "--no-headers").split()
    assert containers[:2] == ["burner", "burner"] and _millicores(containers[2]) >= 300
    k.run("delete", "pod", "burner", "--grace-period=0", "--force")
    wait_until(lambda: "burner" not in k.out("top", "pod", "--no-headers"), timeout=120, interval=3, msg="the burner gone from top")


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_an_exec_of_five_minutes(five_minute_exec: tuple[subprocess.Popen[str], float]) -> None:
    """No time cap: five minutes without a byte of output (slow; started with the module)."""
    p, t0 = five_minute_exec
    out, err = p.communicate(timeout=max(1.0, 420 - (time.monotonic() - t0)))
    assert p.returncode == 0 and out == "after-five-minutes\n", err
    assert time.monotonic() - t0 >= 300
