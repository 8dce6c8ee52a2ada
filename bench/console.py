"""What one live push of the console's fleet page costs on the server, for fleets of growing
size: building the view model (rows, filter, groups) and rendering the fragment, per push.

Each fleet has N nodes in 10 sites, 10 pods and 2 devices per node (Kubernetes object
shapes as the API serves them). The baseline, measured in the same process, is encoding the
same objects as JSON (what the API spends to answer one list of them): the ratio says how a
push compares with one list answer. Every push renders the whole fragment, at most one per
``min_interval`` (0.5 s) per open page.

    python bench/console.py [--nodes 100,1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from typing import Any

from services.apiserver.console import live, pages
from services.apiserver.console.app import templates

NOW = dt.datetime.now(dt.UTC)


def _ts(s: float) -> str:
    return (NOW - dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def fleet_objects(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    nodes, pods, devices = [], [], []
    for i in range(n):
        name = f"edge-{i}"
        ready = "False" if i % 17 == 0 else "True"
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"edgebus.io/site": f"site-{i % 10}", "node-role.kubernetes.io/edge": ""}, "resourceVersion": str(i)},
                "status": {
                    "conditions": [{"type": "Ready", "status": ready, "reason": "EdgeReady", "lastHeartbeatTime": _ts(3), "lastTransitionTime": _ts(3600)}],
                    "addresses": [{"type": "InternalIP", "address": f"10.{i // 250}.{i % 250}.1"}],
                    "nodeInfo": {"kubeletVersion": "v1.30.0-edgebus"},
                },
            }
        )
        for k in range(10):
            pods.append(
                {
                    "metadata": {"name": f"p-{i}-{k}", "namespace": "default", "creationTimestamp": _ts(600)},
                    "spec": {"nodeName": name, "containers": [{"name": "c", "image": "busybox"}]},
                    "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0}]},
                }
            )
        for k in range(2):
            devices.append({"metadata": {"name": f"d-{i}-{k}", "namespace": "default"}, "spec": {"nodeName": name}, "status": {"state": "online", "twins": []}})
    return nodes, pods, devices


def states_of(nodes: list[dict[str, Any]], pods: list[dict[str, Any]], devices: list[dict[str, Any]]) -> dict[str, live.FeedState]:
    def feed(objs: list[dict[str, Any]]) -> live.FeedState:
        return live.FeedState({live.object_key(o): o for o in objs})

    return {"nodes": feed(nodes), "pods": feed(pods), "devices": feed(devices)}


def timed(fn: Any, repeat: int) -> float:
    xs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1000)
    return statistics.median(xs)


def main(args: argparse.Namespace) -> None:
    env = templates()
    page = pages.fleet_page("", "all", "site")
    tpl = env.get_template(page.template)
    out: dict[str, str] = {}
    for n in (int(x) for x in args.nodes.split(",")):
        nodes, pods, devices = fleet_objects(n)
        st = states_of(nodes, pods, devices)
        push_ms = timed(lambda: tpl.render(**page.context(st, NOW)), args.repeat)  # noqa: B023
        size = len(tpl.render(**page.context(st, NOW)))
        base_ms = timed(lambda: json.dumps({"items": nodes + pods + devices}), args.repeat)  # noqa: B023
        print(f"{n:6d} nodes ({len(pods)} pods, {len(devices)} devices): one push {push_ms:.1f} ms, {size / 1024:.0f} KiB of HTML; JSON of the same objects {base_ms:.1f} ms; ratio {push_ms / base_ms:.2f}")
        out[f"push_ms_{n}"] = f"{push_ms:.1f}"
        out[f"ratio_{n}"] = f"{push_ms / base_ms:.2f}"
        out[f"html_kib_{n}"] = f"{size / 1024:.0f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", default="100,1000")
    ap.add_argument("--repeat", type=int, default=5)
    main(ap.parse_args())
