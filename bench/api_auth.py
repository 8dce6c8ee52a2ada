"""API security cost: a GET of one object through the apiserver with authentication off,
with a bearer token and RBAC (the user's access comes from a RoleBinding among many), and
with the same over HTTPS; p50/p99 latency of sequential requests on one keep-alive
connection, and the ratio of each to the open API measured in the same run.

    .venv/bin/python bench/api_auth.py [--requests 500] [--bindings 500]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from edgebus.natsd import free_port  # noqa: E402
from edgebus.objects import CONFIGMAPS, ROLEBINDINGS, ROLES  # noqa: E402
from edgebus.objectstore import ObjectStore  # noqa: E402
from edgebus.testing.security import make_credentials  # noqa: E402
from edgebus.testing.servers import start_hub  # noqa: E402
from edgebus.testing.services import build_service  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402

PATH = "/api/v1/namespaces/default/configmaps/bench"


async def measure(client: httpx.AsyncClient, n: int) -> list[float]:
    for _ in range(20):  # warm up (connection, TLS session, caches)
        assert (await client.get(PATH)).status_code == 200
    out = []
    deadline = time.monotonic() + 120
    for _ in range(n):
        t0 = time.perf_counter()
        r = await client.get(PATH)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
        if time.monotonic() > deadline:
            break
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="edgebus-bench-auth-"))
    hub = start_hub(root)
    creds = make_credentials(root / "creds")
    ports = {k: free_port() for k in ("open", "token", "tls")}
    svcs = {
        "open": build_service("apiserver", nats=hub.nats_settings("apiserver"), apiserver={"port": ports["open"]}),
        "token": build_service("apiserver", nats=hub.nats_settings("apiserver"), apiserver={"port": ports["token"], **creds.apiserver_settings(tls=False)}),
        "tls": build_service("apiserver", nats=hub.nats_settings("apiserver"), apiserver={"port": ports["tls"], **creds.apiserver_settings(tls=True)}),
    }
    bus = hub.bus("bench")
    try:
        for s in svcs.values():
            await s.start()
        await bus.connect(retry_for=10)
        store = ObjectStore(bus)
        await eventually(lambda: all(s.ready()["ok"] for s in svcs.values()), timeout=20, msg="apiservers ready")
        await store.create(CONFIGMAPS, {"metadata": {"name": "bench"}, "data": {"k": "v"}}, namespace="default")
        rule = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
        await store.create(ROLES, {"metadata": {"name": "reader"}, "rules": rule}, namespace="default")
        for i in range(args.bindings):  # other users' bindings, and the bench user's among them
            user = "bench-user" if i == args.bindings // 2 else f"user-{i}"
            await store.create(ROLEBINDINGS, {"metadata": {"name": f"rb-{i}"}, "roleRef": {"kind": "Role", "name": "reader"}, "subjects": [{"kind": "User", "name": user}, {"kind": "Group", "name": f"g-{i}"}]}, namespace="default")
        headers = {"Authorization": f"Bearer {creds.user_token('bench-user', 'team')}"}

        async def bound() -> bool:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['token']}", headers=headers) as c:
                return (await c.get(PATH)).status_code == 200

        await eventually(bound, timeout=30, msg="the bindings loaded")
        results: dict[str, list[float]] = {}
        tls = ssl.create_default_context(cadata=creds.ca_pem.decode())
        clients: dict[str, Any] = {
            "open": httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['open']}"),
            "token": httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['token']}", headers=headers),
            "tls": httpx.AsyncClient(base_url=f"https://127.0.0.1:{ports['tls']}", headers=headers, verify=tls),
        }
        for name, c in clients.items():
            async with c:
                results[name] = await measure(c, args.requests)
        base = statistics.median(results["open"])
        for name, xs in results.items():
            print(f"{name:6s} n={len(xs)} p50={pct(xs, 50):.2f} ms p99={pct(xs, 99):.2f} ms  p50 ratio to open API {statistics.median(xs) / base:.2f}")
        print(
            f"RESULT open_p50_ms={pct(results['open'], 50):.2f} token_rbac_p50_ms={pct(results['token'], 50):.2f} "
            f"https_token_rbac_p50_ms={pct(results['tls'], 50):.2f} token_rbac_ratio={statistics.median(results['token']) / base:.2f} "
            f"https_ratio={statistics.median(results['tls']) / base:.2f} bindings={args.bindings}"
        )
    finally:
        await bus.close()
        for s in svcs.values():
            await s.stop()
        hub.server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--bindings", type=int, default=500)
    asyncio.run(main(ap.parse_args()))
