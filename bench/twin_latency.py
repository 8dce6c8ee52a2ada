"""Device twin benchmark: device -> cloud latency, local rule reaction, twin reports/s.

Starts a lab (cloud + one edge node, every module its own process, devicecontroller and
devicetwin included), plus - in this process - a simulated Modbus thermostat and a Modbus
mapper (the same code as ``services/mappers/modbus``, bound to protocol ``modbus-bench`` so
the lab's own mapper leaves the device alone), and measures:

1. **device -> cloud**: a register changes on the device -> the Device's
   ``status.twins[].reported`` in the cloud shows it (p50/p99). The mapper polls every
   ``--poll`` ms, so this includes up to one poll interval (printed separately);
2. **local rule reaction**: the mapper read the value that makes ``temperature > 30`` true
   -> the mapper issues the fan write devicetwin decided on (p50/p99): mapper ->
   devicetwin -> mapper, over the node's NATS server;
3. **sustained twin reports/s per node**: ``twin/update`` messages (as any mapper sends
   them) accepted by devicetwin, and the time the cloud needs to show the last value;

and, in the same run, the baselines: a raw NATS request/reply round trip on the edge's
leaf server (the rule path crosses it twice) and from the edge to a responder on the cloud
server (the device -> cloud path crosses the leaf link once).

    .venv/bin/python bench/twin_latency.py [--samples 60] [--poll 100] [--reports 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgebus import names  # noqa: E402
from edgebus.bus import Bus, BusMsg  # noqa: E402
from edgebus.devices import hw  # noqa: E402
from edgebus.devices.mapper import Mapper  # noqa: E402
from edgebus.devices.simulators import ModbusThermostat  # noqa: E402
from edgebus.lab import Lab, LabPlan  # noqa: E402
from edgebus.natsd import free_port  # noqa: E402
from edgebus.objects import DEVICEMODELS, DEVICES  # noqa: E402
from edgebus.objectstore import ObjectStore  # noqa: E402
from edgebus.testing.labrun import free_base_port  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402
from services.mappers.modbus.driver import ModbusDriver  # noqa: E402

NODE = "edge-1"
PROTO = "modbus-bench"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt(ms: list[float]) -> str:
    return f"p50 {pct(ms, 50):7.2f} ms   p99 {pct(ms, 99):7.2f} ms   max {max(ms):7.2f} ms   (n={len(ms)})"


MODEL = {
    "metadata": {"name": "bench-thermostat", "namespace": "default"},
    "spec": {
        "properties": [
            {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly"},
            {"name": "fan", "type": "BOOLEAN", "accessMode": "ReadWrite"},
        ]
    },
}
COUNTER_MODEL = {"metadata": {"name": "bench-counter", "namespace": "default"}, "spec": {"properties": [{"name": "v", "type": "INT", "accessMode": "ReadOnly"}]}}


def thermostat(port: int, poll_ms: int) -> dict[str, Any]:
    def prop(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "collectCycle": poll_ms, "reportCycle": 60_000, "visitors": {"protocolName": PROTO, "configData": cfg}}

    return {
        "metadata": {"name": "bench-thermostat", "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "bench-thermostat"},
            "nodeName": NODE,
            "protocol": {"protocolName": PROTO, "configData": {"ip": "127.0.0.1", "port": port, "timeout": 1.0}},
            "properties": [
                prop("temperature", {"register": "InputRegister", "offset": 0, "limit": 1, "dataType": "int16", "scale": 0.1}),
                prop("fan", {"register": "CoilRegister", "offset": 0, "limit": 1}),
            ],
            "rules": [
                {"name": "fan-on", "when": "temperature > 30", "set": {"fan": "true"}},
                {"name": "fan-off", "when": "temperature < 28", "set": {"fan": "false"}},
            ],
        },
    }


def counter(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"counter-{i}", "namespace": "default"},
        "spec": {"deviceModelRef": {"name": "bench-counter"}, "nodeName": NODE, "protocol": {"protocolName": "bench-null"}, "properties": [{"name": "v"}]},
    }


def reported(dev: dict[str, Any], prop: str) -> str | None:
    for t in (dev.get("status") or {}).get("twins") or []:
        if t.get("propertyName") == prop:
            return (t.get("reported") or {}).get("value")
    return None


async def rtt(req_bus: Bus, resp_bus: Bus, subject: str, n: int) -> list[float]:
    async def echo(m: BusMsg) -> None:
        await m.respond(m.data)

    unsub = await resp_bus.subscribe(subject, echo)
    await resp_bus.flush()
    await asyncio.sleep(0.3)  # the subscription propagates over the leaf link
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await req_bus.request(subject, b"x", timeout=5)
        out.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.005)
    await unsub()
    return out


class CloudWatch:
    """When a device's reported value first shows in the cloud: the Device is read every
    ``interval`` seconds (a KV get; the precision of the device -> cloud figures)."""

    def __init__(self, store: ObjectStore, interval: float = 0.005) -> None:
        self.store = store
        self.interval = interval
        self.latest: dict[str, dict[str, Any]] = {}

    async def wait_value(self, device: str, prop: str, value: str, timeout: float = 10.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                dev = await self.store.get(DEVICES, "default", device)
            except Exception:
                dev = None
            if dev is not None:
                self.latest[device] = dev
                if reported(dev, prop) == value:
                    return time.perf_counter()
            await asyncio.sleep(self.interval)
        raise TimeoutError(f"{device}.{prop} never showed {value} in the cloud")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=60, help="device -> cloud samples")
    ap.add_argument("--flips", type=int, default=40, help="rule firings to measure")
    ap.add_argument("--poll", type=int, default=100, help="the mapper's poll interval (collectCycle, ms)")
    ap.add_argument("--reports", type=int, default=20_000, help="twin reports for the throughput run")
    ap.add_argument("--devices", type=int, default=20, help="devices the throughput run reports for")
    ap.add_argument("--debug", action="store_true", help="explain slow device -> cloud samples")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="edgebus-bench-twin-"))
    plan = LabPlan(data_dir=str(tmp / "lab"), nodes=[NODE], base_port=free_base_port(1), heartbeat=2.0, log_level="WARNING")
    lab = Lab(plan, die_with_supervisor=True)
    print(f"starting lab in {tmp} ...", flush=True)
    await lab.up()
    cloud = plan.cloud_bus("bench-cloud")
    edge = plan.node_bus(NODE, "bench-edge")
    edge2 = plan.node_bus(NODE, "bench-edge-2")
    for b in (cloud, edge, edge2):
        await b.connect(retry_for=10)
    store = ObjectStore(cloud)
    sim = ModbusThermostat(port=free_port(), temperature=22.0, drift=False)
    await sim.start()
    mapper = Mapper(edge2, NODE, PROTO, lambda cfg: ModbusDriver(cfg, default_timeout=1.0), default_collect_ms=args.poll, membership_interval=5.0)
    mapper_task = asyncio.create_task(mapper.run())
    watch = CloudWatch(store)
    try:
        # -- baselines ------------------------------------------------------------------
        local = await rtt(edge, edge2, "bench.rtt.local", 300)
        uplink = await rtt(edge, cloud, "bench.rtt.up", 300)

        # -- device -> cloud --------------------------------------------------------------
        await store.create(DEVICEMODELS, copy.deepcopy(MODEL))
        await store.create(DEVICES, thermostat(sim.port, args.poll))
        await watch.wait_value("bench-thermostat", "temperature", "22", timeout=60)
        d2c = []
        for i in range(args.samples):
            value = round(20.0 + (i % 70) / 10, 1)  # 20.0 .. 26.9: no rule fires
            if f"{value:g}" == reported(watch.latest["bench-thermostat"], "temperature"):
                value = round(value + 0.05 + 0.05, 1)
            t0 = time.perf_counter()
            wall0 = time.time() * 1000
            sim.temperature = value
            t1 = await watch.wait_value("bench-thermostat", "temperature", f"{value:g}")
            d2c.append((t1 - t0) * 1000)
            if args.debug and d2c[-1] > args.poll + 100:
                dev = watch.latest["bench-thermostat"]
                tw = {t["propertyName"]: t for t in dev["status"]["twins"]}
                edge_ts = int(tw["temperature"]["reported"]["metadata"]["timestamp"])
                print(f"slow sample {i}: {d2c[-1]:.0f} ms; edge read it {edge_ts - wall0:.0f} ms after the change", flush=True)
            await asyncio.sleep(random.uniform(0, args.poll / 1000))  # de-phase from the poll

        # -- local rule reaction ----------------------------------------------------------
        mapper.reactions.clear()
        for i in range(args.flips):
            hot = i % 2 == 0
            sim.temperature = 31.0 + i / 100 if hot else 25.0 + i / 100
            await eventually(lambda hot=hot: sim.fan is hot, timeout=5, interval=0.002, msg="fan follows the rule")
        reactions = [s * 1000 for s in mapper.reactions]

        # -- sustained twin reports/s -----------------------------------------------------
        await store.create(DEVICEMODELS, copy.deepcopy(COUNTER_MODEL))
        for i in range(args.devices):
            await store.create(DEVICES, counter(i))

        async def members() -> bool:
            env = hw.request()
            got = asyncio.get_running_loop().create_future()

            async def on(m: BusMsg) -> None:
                if not got.done():
                    got.set_result(hw.loads(m.data))

            unsub = await edge.subscribe(names.hw_node_subject(NODE, names.HW_MEMBERSHIP_RESULT), on)
            await edge.publish(names.hw_node_subject(NODE, names.HW_MEMBERSHIP_GET), hw.dumps(env))
            try:
                res = await asyncio.wait_for(got, 2)
            finally:
                await unsub()
            return sum(1 for d in res["devices"] if d["name"].startswith("counter-")) == args.devices

        await eventually(members, timeout=60, interval=0.5, msg="counters on the node")
        done = 0
        window = asyncio.Semaphore(500)
        finished = asyncio.Event()

        async def on_result(m: BusMsg) -> None:
            nonlocal done
            done += 1
            window.release()
            if done >= args.reports:
                finished.set()

        unsub = await edge.subscribe(names.hw_device_filter(names.HW_TWIN_RESULT), on_result)
        await edge.flush()
        t0 = time.perf_counter()
        for i in range(args.reports):
            await window.acquire()
            dev = f"counter-{i % args.devices}"
            await edge.publish(names.hw_device_subject("default", dev, names.HW_TWIN_UPDATE), hw.dumps(hw.twin_update({"v": str(i)})))
        await asyncio.wait_for(finished.wait(), 60)
        t_edge = time.perf_counter() - t0
        await unsub()
        last = {f"counter-{i % args.devices}": str(i) for i in range(args.reports)}
        for dev, v in last.items():
            await watch.wait_value(dev, "v", v, timeout=120)  # polled: adds up to 5 ms per device
        t_cloud = time.perf_counter() - t0
    finally:
        mapper_task.cancel()
        try:
            await mapper_task
        except BaseException:
            pass
        await sim.stop()
        for b in (cloud, edge, edge2):
            await b.close()
        await lab.down()

    print()
    print("baselines (raw NATS request/reply, same run)")
    print(f"  edge-local round trip        {fmt(local)}")
    print(f"  edge -> cloud round trip     {fmt(uplink)}")
    print(f"device -> cloud status         {fmt(d2c)}")
    slow = [(i, round(x)) for i, x in enumerate(d2c) if x > args.poll + 100]
    if slow:
        print(f"  samples above poll + 100 ms  {slow}  (sample index, ms)")
    print(f"  poll interval                {args.poll} ms (included above; target p99 <= poll + 100 ms = {args.poll + 100} ms)")
    print(f"  minus the poll interval      p99 {pct(d2c, 99) - args.poll:7.2f} ms   ratio to edge->cloud RTT p99: {(pct(d2c, 99) - args.poll) / pct(uplink, 99):.1f}x")
    if reactions:
        print(f"local rule reaction            {fmt(reactions)}   (target p99 <= 10 ms)")
        print(f"  ratio to edge-local RTT      p50 {pct(reactions, 50) / pct(local, 50):.1f}x   p99 {pct(reactions, 99) / pct(local, 99):.1f}x")
    print(f"twin reports, one node         {args.reports / t_edge:8.0f} reports/s accepted by devicetwin ({args.reports} reports, {args.devices} devices, {t_edge:.2f} s)")
    print(f"  cloud shows the last values  {t_cloud:.2f} s after the first report (reports coalesce per device on the way up)")
    ok_rule = bool(reactions) and pct(reactions, 99) <= 10
    ok_d2c = pct(d2c, 99) <= args.poll + 100
    print(f"targets: rule reaction p99 <= 10 ms: {'OK' if ok_rule else 'MISSED'};  device -> cloud p99 <= poll + 100 ms: {'OK' if ok_d2c else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
