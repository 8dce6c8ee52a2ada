"""Service cluster IPs allocated by the object store (the apiserver's and cloudhub's), against
a real nats-server: unique, released on delete, user-set addresses checked, headless."""

from __future__ import annotations

import asyncio
import ipaddress
import json

import httpx
import pytest

from edgebus import names
from edgebus.errors import Invalid
from edgebus.objects import SERVICES
from edgebus.objectstore import ObjectStore
from edgebus.runtime import NatsSettings
from edgebus.natsd import free_port
from edgebus.testing.waiting import eventually
from services.apiserver.config import ApiServerSettings, Settings
from services.apiserver.service import build

SMALL = "10.100.0.0/29"  # 6 usable addresses: .1 .. .6


@pytest.fixture
async def store(bus):
    s = ObjectStore(bus, service_cidr=SMALL)
    await s.ensure()
    await s.ensure_system_namespaces()
    return s


def svc(name: str, **spec: object) -> dict:
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


async def test_allocated_unique_released_on_delete(store: ObjectStore) -> None:
    ips = []
    for i in range(6):
        s = await store.create(SERVICES, svc(f"s{i}"))
        ips.append(s["spec"]["clusterIP"])
        assert s["spec"]["clusterIPs"] == [ips[-1]]
        assert (await store.get(SERVICES, "default", f"s{i}"))["spec"]["clusterIP"] == ips[-1]
    assert len(set(ips)) == 6 and all(ipaddress.ip_address(ip) in ipaddress.ip_network(SMALL) for ip in ips)
    assert sorted(ips, key=ipaddress.ip_address) == [f"10.100.0.{i}" for i in range(1, 7)]
    with pytest.raises(Exception, match="range is full") as ei:
        await store.create(SERVICES, svc("s6"))
    assert ei.value.status()["code"] == 500
    with pytest.raises(Exception):
        await store.get(SERVICES, "default", "s6")  # nothing stored

    await store.delete(SERVICES, "default", "s2")
    again = await store.create(SERVICES, svc("s6"))
    assert again["spec"]["clusterIP"] == ips[2]  # the only free one

    # a headless Service holds none, and does not count against the range
    h = await store.create(SERVICES, svc("headless", clusterIP="None"))
    assert h["spec"]["clusterIP"] == "None" and h["spec"]["clusterIPs"] == ["None"]
    ext = await store.create(SERVICES, {"metadata": {"name": "ext", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "example.com"}})
    assert "clusterIP" not in ext["spec"]


async def test_user_set_address(store: ObjectStore) -> None:
    a = await store.create(SERVICES, svc("a", clusterIP="10.100.0.5"))
    assert a["spec"]["clusterIP"] == "10.100.0.5"
    with pytest.raises(Invalid) as ei:
        await store.create(SERVICES, svc("b", clusterIP="10.100.0.5"))
    assert "provided IP is already allocated" in ei.value.message and ei.value.status()["code"] == 422
    with pytest.raises(Invalid) as ei:
        await store.create(SERVICES, svc("b", clusterIP="10.200.0.5"))
    assert "The range of valid IPs is 10.100.0.0/29" in ei.value.message
    # the failed creates held nothing: the other five addresses are all free
    got = {(await store.create(SERVICES, svc(f"c{i}")))["spec"]["clusterIP"] for i in range(5)}
    assert got == {f"10.100.0.{i}" for i in (1, 2, 3, 4, 6)}

    # updates keep it; changing it is refused
    cur = await store.get(SERVICES, "default", "a")
    cur["spec"].pop("clusterIP")
    cur["spec"].pop("clusterIPs")
    cur["spec"]["ports"] = [{"port": 81}]
    upd = await store.update(SERVICES, cur)
    assert upd["spec"]["clusterIP"] == "10.100.0.5" and upd["spec"]["ports"][0]["port"] == 81
    upd["spec"]["clusterIP"] = "10.100.0.6"
    upd["spec"]["clusterIPs"] = ["10.100.0.6"]
    with pytest.raises(Invalid, match="field is immutable"):
        await store.update(SERVICES, upd)


async def test_dry_run_reserves_nothing(store: ObjectStore) -> None:
    d = await store.create(SERVICES, svc("d"), dry_run=True)
    assert d["spec"]["clusterIP"].startswith("10.100.0.")
    entries, _ = await store.cluster_ips.kv.list(">")
    assert [e for e in entries if not e.deleted] == []


async def test_two_stores_racing_never_share_an_address(bus) -> None:
    a, b = ObjectStore(bus, service_cidr=SMALL), ObjectStore(bus, service_cidr=SMALL)
    await a.ensure()
    await a.ensure_system_namespaces()
    results = await asyncio.gather(*(st.create(SERVICES, svc(f"r{i}")) for i, st in enumerate([a, b] * 3)))
    ips = [r["spec"]["clusterIP"] for r in results]
    assert len(set(ips)) == 6


async def test_stale_reservation_is_reclaimed(store: ObjectStore) -> None:
    # an apiserver stopped between reserving and storing: the entry names no live Service
    kv = store.cluster_ips.kv
    for i in range(1, 7):
        await kv.create(names.cluster_ip_key(f"10.100.0.{i}"), json.dumps({"service": f"default/gone{i}", "uid": "x"}).encode())
    s = await store.create(SERVICES, svc("fresh"))
    assert s["spec"]["clusterIP"].startswith("10.100.0.")
    # asked for explicitly, a stale address is taken over too
    t = await store.create(SERVICES, svc("picky", clusterIP="10.100.0.6" if s["spec"]["clusterIP"] != "10.100.0.6" else "10.100.0.5"))
    holder = await store.cluster_ips.holder(t["spec"]["clusterIP"])
    assert holder == ("default", "picky", t["metadata"]["uid"])


async def test_apiserver_allocates_from_its_setting(hub) -> None:
    port = free_port()
    settings = Settings(nats=NatsSettings(**hub.nats_settings("apiserver")), apiserver=ApiServerSettings(port=port), service_cidr="10.123.0.0/24")
    api = build(settings)
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, timeout=10, msg="apiserver ready")
            r = await client.post("/api/v1/namespaces/default/services", json={"apiVersion": "v1", "kind": "Service", **svc("web")})
            assert r.status_code == 201, r.text
            ip = r.json()["spec"]["clusterIP"]
            assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.123.0.0/24")
            table = await client.get("/api/v1/namespaces/default/services", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
            row = table.json()["rows"][0]["cells"]
            assert ip in row
            r = await client.post("/api/v1/namespaces/default/services", json={"apiVersion": "v1", "kind": "Service", **svc("bad", clusterIP="10.96.0.10")})
            assert r.status_code == 422 and "The range of valid IPs is 10.123.0.0/24" in r.json()["message"]
            assert (await client.delete("/api/v1/namespaces/default/services/web")).status_code == 200
            r = await client.post("/api/v1/namespaces/default/services", json={"apiVersion": "v1", "kind": "Service", **svc("again", clusterIP=ip)})
            assert r.status_code == 201, r.text  # released on delete
    finally:
        await asyncio.wait_for(api.stop(), 15)
