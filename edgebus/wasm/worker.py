"""The Wasm worker: one process per container, started by :class:`WasmRuntime`.

``python -m edgebus.wasm.worker <container dir>`` reads ``config.json`` there, runs the
module's ``_start`` under WASI and writes ``exit.json`` (atomically) when it ends:

* stdout and stderr become CRI log records (``<time> <stream> <P|F> <line>``) in the
  container's log file, the file ``kubectl logs`` reads for containers too;
* the memory limit is wasmtime's store limit (``memory.grow`` beyond it fails); a module
  that traps with its memory at the limit ends ``OOMKilled`` (exit 137);
* the CPU limit is a token bucket over the CPU time the module's thread used: it refills
  at the limit's rate (e.g. 0.5 CPU-second per second for ``500m``) up to
  ``cpu_burst_seconds`` of it; a module that empties it (it used more than its share for
  that long) is interrupted through wasmtime's epoch interruption and ends
  ``CPULimitExceeded`` (exit 137) - a module cannot be throttled, so it is stopped;
* SIGTERM interrupts the module at once (exit 143): WASI preview 1 has no signals, so a
  module cannot act on it; SIGKILL (after the grace period) needs no cooperation;
* a trap ends the module with exit 134 (as the ``wasmtime`` CLI), ``proc_exit(n)`` with
  ``n``; a module that cannot be loaded with 128 (``StartError``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import wasmtime

#: bytes of one WebAssembly page
PAGE = 65536
#: a partial line longer than this is written as a ``P`` record
MAX_LINE = 16 * 1024
#: how often the CPU bucket is looked at
TICK = 0.05


def rfc3339_nano(ns: int) -> str:
    s, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:09d}Z"


class LogWriter:
    """CRI log records for one stream, appended to the container's log file."""

    def __init__(self, f: Any, lock: threading.Lock, stream: str) -> None:
        self.f = f
        self.lock = lock
        self.stream = stream.encode()
        self.buf = b""

    def write(self, data: bytes) -> None:
        self.buf += bytes(data)
        out = []
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                break
            out.append((b"F", self.buf[:i]))
            self.buf = self.buf[i + 1 :]
        while len(self.buf) > MAX_LINE:
            out.append((b"P", self.buf[:MAX_LINE]))
            self.buf = self.buf[MAX_LINE:]
        self._emit(out)

    def close(self) -> None:
        if self.buf:
            self._emit([(b"F", self.buf)])
            self.buf = b""

    def _emit(self, records: list[tuple[bytes, bytes]]) -> None:
        if not records:
            return
        ts = rfc3339_nano(time.time_ns()).encode()
        with self.lock:
            self.f.write(b"".join(ts + b" " + self.stream + b" " + tag + b" " + line + b"\n" for tag, line in records))
            self.f.flush()


class CpuBucket:
    """The CPU limit: a token bucket of CPU seconds refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.capacity = max(rate * burst, 0.05)
        self.tokens = self.capacity

    def spend(self, cpu: float, wall: float) -> bool:
        """Account ``cpu`` seconds used over ``wall`` seconds; False once it is empty."""
        self.tokens = min(self.capacity, self.tokens + self.rate * wall) - cpu
        return self.tokens >= 0


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


class Worker:
    def __init__(self, cdir: Path) -> None:
        self.dir = cdir
        self.cfg = json.loads((cdir / "config.json").read_text())
        self.terminated = False
        self.cpu_exceeded = False
        self.done = threading.Event()
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        self.engine = wasmtime.Engine(cfg)

    def load(self) -> wasmtime.Module:
        src = Path(self.cfg["module"])
        cache = self.dir.parent.parent / "compiled"
        cached = cache / (self.cfg.get("digest") or "") if self.cfg.get("digest") else None
        if cached is not None and cached.exists():
            try:
                return wasmtime.Module.deserialize_file(self.engine, str(cached))
            except wasmtime.WasmtimeError:
                pass
        module = wasmtime.Module.from_file(self.engine, str(src))
        if cached is not None:
            try:
                cache.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(module.serialize())
                os.replace(tmp, cached)
            except OSError:
                pass
        return module

    def _signals(self) -> None:
        while not self.done.is_set():
            sig = signal.sigwait({signal.SIGTERM, signal.SIGINT})
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.terminated = True
                self.engine.increment_epoch()
                return

    def _cpu(self, thread_id: int, rate: float, burst: float) -> None:
        bucket = CpuBucket(rate, burst)
        clock = time.pthread_getcpuclockid(thread_id)
        last_cpu, last_wall = time.clock_gettime(clock), time.monotonic()
        while not self.done.wait(TICK):
            try:
                cpu = time.clock_gettime(clock)
            except OSError:
                return
            wall = time.monotonic()
            if not bucket.spend(cpu - last_cpu, wall - last_wall):
                self.cpu_exceeded = True
                self.engine.increment_epoch()
                return
            last_cpu, last_wall = cpu, wall

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        log_path = Path(cfg["log_path"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(log_path, "ab")  # noqa: SIM115 - open for the module's whole life
        lock = threading.Lock()
        out, err = LogWriter(f, lock, "stdout"), LogWriter(f, lock, "stderr")
        limit = int(cfg.get("memory_limit") or -1)
        try:
            try:
                module = self.load()
                store = wasmtime.Store(self.engine)
                store.set_epoch_deadline(1)
                store.set_limits(memory_size=limit if limit > 0 else -1)
                wasi = wasmtime.WasiConfig()
                wasi.argv = list(cfg["argv"])
                wasi.env = [(k, v) for k, v in cfg["env"]]
                for host, guest, ro in cfg["preopens"]:
                    wasi.preopen_dir(host, guest, not ro)
                wasi.stdout_custom = out.write
                wasi.stderr_custom = err.write
                store.set_wasi(wasi)
                linker = wasmtime.Linker(self.engine)
                linker.define_wasi()
                instance = linker.instantiate(store, module)
                start = instance.exports(store).get("_start")
                if not isinstance(start, wasmtime.Func):
                    raise ValueError("the module exports no _start function (a WASI command)")
            except (wasmtime.WasmtimeError, wasmtime.Trap, OSError, ValueError) as exc:
                return {"exit_code": 128, "reason": "StartError", "message": _first_line(exc)}
            cpu_millis = int(cfg.get("cpu_limit_millis") or 0)
            if cpu_millis > 0:
                threading.Thread(target=self._cpu, args=(threading.get_ident(), cpu_millis / 1000, float(cfg.get("cpu_burst_seconds") or 10.0)), daemon=True).start()
            try:
                start(store)
                return {"exit_code": 0, "reason": "Completed", "message": ""}
            except wasmtime.ExitTrap as exc:
                return {"exit_code": exc.code, "reason": "Completed" if exc.code == 0 else "Error", "message": ""}
            except wasmtime.Trap as exc:
                if exc.trap_code == wasmtime.TrapCode.INTERRUPT and self.terminated:
                    return {"exit_code": 143, "reason": "Error", "message": "stopped (SIGTERM)"}
                if exc.trap_code == wasmtime.TrapCode.INTERRUPT and self.cpu_exceeded:
                    return {"exit_code": 137, "reason": "CPULimitExceeded", "message": f"the module used more than its CPU limit ({cpu_millis}m) for too long"}
                if limit > 0 and _memory_used(instance, store) + PAGE > limit - limit // 10:
                    return {"exit_code": 137, "reason": "OOMKilled", "message": f"{_first_line(exc)} (memory at its limit of {limit} bytes)"}
                return {"exit_code": 134, "reason": "Error", "message": _first_line(exc)}
            except wasmtime.WasmtimeError as exc:
                return {"exit_code": 134, "reason": "Error", "message": _first_line(exc)}
        finally:
            self.done.set()
            out.close()
            err.close()
            f.close()


def _memory_used(instance: wasmtime.Instance, store: wasmtime.Store) -> int:
    total = 0
    for v in instance.exports(store).values():
        if isinstance(v, wasmtime.Memory):
            total = max(total, v.data_len(store))
    return total


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m edgebus.wasm.worker <container dir>", file=sys.stderr)
        return 2
    cdir = Path(args[0])
    # SIGTERM is taken by a thread of its own (the main thread is inside the module)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    w = Worker(cdir)
    threading.Thread(target=w._signals, daemon=True).start()
    result = w.run()
    result["finished_at"] = time.time_ns()
    _write_json(cdir / "exit.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
