"""Every cloud service with 2 replicas (the scheduler too); one replica of each killed with SIGKILL mid-load:
the outcome is what one replica of each produces — nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from edgebus import names
from edgebus.bus import KV
from edgebus.objects import NODES
from edgebus.testing.labrun import LabCli
from edgebus.testing.waiting import eventually

from .conftest import RunningLab, start_lab, stop_lab

pytestmark = pytest.mark.e2e

N_CM, ROUNDS = 20, 15  # 300 updates
REPLICATED = ("apiserver", "cloudhub", "edgecontroller", "devicecontroller", "endpointcontroller", "scheduler")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "thermostat.yaml"


@pytest.fixture
async def lab(tmp_path):
    rl = await start_lab(tmp_path, proxy=False, devices=True, containerd=False, replicas=dict.fromkeys(REPLICATED, 2))
    try:
        yield rl
    finally:
        await stop_lab(rl)


class Writers:
    """An API client spread over the apiserver replicas; a replica that is gone is skipped
    (as a Service would), so load continues through the failover."""

    def __init__(self, urls: list[str], **kw: Any) -> None:
        self.clients = [httpx.AsyncClient(base_url=u, timeout=5, **kw) for u in urls]
        self.n = 0
        self.failovers = 0

    async def request(self, method: str, path: str, **kw) -> httpx.Response:
        for attempt in range(2 * len(self.clients)):
            c = self.clients[(self.n + attempt) % len(self.clients)]
            try:
                r = await c.request(method, path, **kw)
                self.n += 1
                return r
            except httpx.TransportError:
                self.failovers += 1
                await asyncio.sleep(0.05)
        raise AssertionError(f"no apiserver replica answered {method} {path}")

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()


async def test_two_replicas_each_survive_killing_one(lab: RunningLab) -> None:
    plan = lab.lab.plan
    api = Writers([plan.apiserver_url, plan.api_url(plan.replica_port("apiserver", 2))], **plan.http_kwargs())
    ns = "/api/v1/namespaces/default"
    try:
        for i in range(N_CM):
            r = await api.request("POST", f"{ns}/configmaps", json={"metadata": {"name": f"s-{i:02d}"}, "data": {"v": "0"}})
            assert r.status_code == 201, r.text
        pod = {"metadata": {"name": "holder"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "i"}], "volumes": [{"name": f"v{i}", "configMap": {"name": f"s-{i:02d}"}} for i in range(N_CM)]}}
        assert (await api.request("POST", f"{ns}/pods", json=pod)).status_code == 201
        await eventually(lambda: _edge_values(lab, "0"), timeout=20, msg="initial sync")
        # a live device, so devicecontroller has work: the lab's simulated thermostat
        cli = LabCli(Path(plan.data_dir))
        docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
        docs[1]["spec"]["protocol"]["configData"]["port"] = plan.sim_modbus_port("edge-1")
        await asyncio.to_thread(cli.run, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
        await eventually(lambda: _reported(cli, "temperature"), timeout=30, interval=0.5, msg="device values in the cloud")

        leader = await _leader_pid(lab)
        ep_leader = await _leader_pid(lab, "endpointcontroller")
        sched_leader = await _leader_pid(lab, "scheduler")
        life_leader = await _leader_pid(lab, "cloudhub-lifecycle")
        victims = {"cloud/apiserver", "cloud/devicecontroller"}
        for pid in (leader, ep_leader, sched_leader, life_leader):
            victims.add(next(name for name, p in lab.lab.procs.items() if p.popen and p.popen.pid == pid))
        assert len(victims) == 6, "one replica of each service, the leaders among them"

        async def load() -> None:
            for r in range(1, ROUNDS + 1):
                for i in range(N_CM):
                    for _ in range(10):  # read-modify-write, as any client does; 409 on a race
                        cur = (await api.request("GET", f"{ns}/configmaps/s-{i:02d}")).json()
                        cur["data"] = {"v": str(r)}
                        resp = await api.request("PUT", f"{ns}/configmaps/s-{i:02d}", json=cur)
                        if resp.status_code == 200:
                            break
                        assert resp.status_code == 409, resp.text

        task = asyncio.create_task(load())
        await asyncio.sleep(0.5)
        assert not task.done()
        for name in victims:
            p = lab.lab.procs[name]
            p.wanted = False  # stays dead: the other replica carries on alone
            os.kill(p.popen.pid, signal.SIGKILL)
        killed = time.monotonic()
        await task
        assert api.failovers > 0, "the killed apiserver took requests before it died"
        await eventually(lambda: _edge_values(lab, str(ROUNDS)), timeout=30, msg="the edge at the final state")
        took = time.monotonic() - killed

        # identical to a one-replica run: exactly the final objects, each applied once per version
        items = (await lab.meta.list("configmaps"))["items"]
        assert {i["object"]["metadata"]["name"]: i["object"]["data"]["v"] for i in items} == {f"s-{i:02d}": str(ROUNDS) for i in range(N_CM)}
        changes = [c for c in (await lab.meta.changes(0, 10_000))["changes"] if c["type"] != "STATUS"]
        pairs = [(c["key"], c["sync"]) for c in changes]
        assert len(pairs) == len(set(pairs)), "a downstream message was applied twice"
        for i in items:
            assert i["updates"] <= ROUNDS + 1
        # the surviving cloudhub keeps the node Ready (heartbeats every second, grace 5 s)
        await asyncio.sleep(6)
        node = await lab.store.get(NODES, None, "edge-1")
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
        # and the surviving edgecontroller, endpointcontroller, scheduler and cloudhub hold the leases now
        assert await _leader_pid(lab) != leader
        assert await _leader_pid(lab, "cloudhub-lifecycle") != life_leader
        unbound = {"metadata": {"name": "placed"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        assert (await api.request("POST", f"{ns}/pods", json=unbound)).status_code == 201
        await eventually(lambda: _bound(api, ns, "placed"), timeout=30, msg="a pod bound by the surviving scheduler")
        assert await _leader_pid(lab, "scheduler") != sched_leader
        svc = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
        assert (await api.request("POST", f"{ns}/services", json=svc)).status_code == 201
        await eventually(lambda: _endpoints_exist(api, ns, "web"), timeout=30, msg="Endpoints from the surviving endpointcontroller")
        assert await _leader_pid(lab, "endpointcontroller") != ep_leader
        # the surviving devicecontroller still brings device twins into the cloud (the CLI
        # talks to the surviving apiserver)
        survivor = ("--server", plan.api_url(plan.replica_port("apiserver", 2)))
        await asyncio.to_thread(cli.run, *survivor, "device", "set", "thermostat", "setpoint=23.5")
        await eventually(lambda: _reported(cli, "setpoint", "23.5", survivor), timeout=30, interval=0.5, msg="a desired value written and reported after the kills")
        print(f"\nfailover: edge at the final state {took:.2f}s after the kills; {api.failovers} requests retried on the other apiserver")
    finally:
        await api.close()


def _reported(cli: LabCli, prop: str, value: str | None = None, server: tuple[str, ...] = ()) -> bool:
    dev = json.loads(cli.run(*server, "get", "device", "thermostat", "-o", "json").stdout)
    twins = {t["propertyName"]: t for t in dev.get("status", {}).get("twins", [])}
    got = twins.get(prop, {}).get("reported", {}).get("value")
    return got is not None and (value is None or got == value)


async def _edge_values(lab: RunningLab, v: str) -> bool:
    items = (await lab.meta.list("configmaps"))["items"]
    return len(items) == N_CM and all(i["object"]["data"] == {"v": v} for i in items)


async def _bound(api: Writers, ns: str, name: str) -> bool:
    return bool(((await api.request("GET", f"{ns}/pods/{name}")).json().get("spec") or {}).get("nodeName"))


async def _endpoints_exist(api: Writers, ns: str, name: str) -> bool:
    return (await api.request("GET", f"{ns}/endpoints/{name}")).status_code == 200


async def _leader_pid(lab: RunningLab, role: str = "edgecontroller") -> int:
    kv = KV(lab.cloud, names.BUCKET_LEASES)
    e = await eventually(lambda: kv.get(role), msg=f"an {role} lease")
    return int(e.value.decode().rsplit("-", 2)[-2])


