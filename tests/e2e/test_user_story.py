"""The foundation's user story, end to end, through the real CLI against a lab of processes."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
import yaml

from edgebus import names
from edgebus.bus import Bus, BusAuth
from edgebus.envelope import Envelope
from edgebus.testing.labrun import LabCli
from edgebus.testing.waiting import wait_until

from .conftest import GRACE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def node_statuses(cli: LabCli) -> dict[str, str]:
    out = cli.run("get", "nodes").stdout.splitlines()
    assert out[0].split()[:2] == ["NAME", "STATUS"]
    return {line.split()[0]: line.split()[1] for line in out[1:]}


#: every node holds the cluster's RBAC objects too (for its metaserver); the story is about the rest
RBAC_KEYS = "/rbac.authorization.k8s.io/"


def node_updates(objects: dict[str, dict]) -> int:
    """Updates a node's store applied to Node objects (its own)."""
    return sum(int(o.get("updates") or 0) for k, o in objects.items() if k.startswith("/core/v1/nodes/"))


def store_objects(cli: LabCli, node: str) -> dict[str, dict]:
    return {i["key"]: i for i in cli.json("node", "objects", node)["items"] if not i["key"].startswith(RBAC_KEYS)}


class EventRecorder:
    """Subscribes (on the node's own server, as one of its local users) to its metamanager's
    commit events."""

    def __init__(self, info: dict, node: str) -> None:
        self.info, self.node = info, node
        self.events: list[tuple[float, dict]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            nkey = str(Path(self.info["identity"]) / "local" / "edgebus.nk")
            self.bus = Bus(self.info["nats"], name="recorder", auth=BusAuth(nkey_file=nkey), node=self.node)
            await self.bus.connect(retry_for=10)

            async def on(m) -> None:
                self.events.append((time.monotonic(), Envelope.decode(m.data).content))

            await self.bus.subscribe(names.meta_events_subject(self.node, "*"), on)
            await self.bus.flush()
            self._ready.set()

        self._loop.run_until_complete(main())
        self._loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.bus.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def test_user_story(lab: LabCli, tmp_path: Path) -> None:
    # 1. both nodes Ready
    # the lab's own nodes (after the API fuzzer, nodes it created may be listed beside them)
    wait_until(lambda: {n: s for n, s in node_statuses(lab).items() if n in ("edge-1", "edge-2")} == {"edge-1": "Ready", "edge-2": "Ready"}, timeout=30, msg="both nodes Ready")

    # 2. apply hello.yaml (+ one more pod on edge-1): on edge-1's store within a second
    rec = EventRecorder(lab.state()["nodes"]["edge-1"], "edge-1")
    try:
        lab.run("apply", "-f", str(ROOT / "examples" / "hello.yaml"))
        applied = time.monotonic()
        extra = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "extra", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "busybox"}]}}
        (tmp_path / "extra.yaml").write_text(yaml.safe_dump(extra))
        lab.run("apply", "-f", str(tmp_path / "extra.yaml"))
        wanted = {"/core/v1/configmaps/default/hello-config", "/core/v1/pods/default/hello"}
        wait_until(lambda: wanted <= {e["key"] for _, e in rec.events}, timeout=5, msg="commit events")
        latest = max(t for t, e in rec.events if e["key"] in wanted)
        assert latest - applied < 1.0, f"objects reached edge-1's store {latest - applied:.2f}s after apply returned"
    finally:
        rec.close()
    # the story's objects (a run after the fuzzers may find theirs on the node too, bound there
    # by the scheduler)
    story = wanted | {"/core/v1/pods/default/extra"}
    objs = wait_until(lambda: (o := store_objects(lab, "edge-1")) and story <= set(o) and o, timeout=30, msg="the story's 3 objects on edge-1")
    objs = {k: v for k, v in objs.items() if k in story}
    table = lab.run("node", "objects", "edge-1").stdout
    assert ["configmaps", "default", "hello-config"] in [ln.split()[:3] for ln in table.splitlines()]
    assert not set(store_objects(lab, "edge-2")) & story, "edge-2 holds nothing of edge-1's"
    cm_key = "/core/v1/configmaps/default/hello-config"
    updates_before = objs[cm_key]["updates"]
    received_before = lab.json("node", "stats", "edge-1")["received"]
    # the node's own Node object (its metaserver serves it) changes while it is off and when
    # it is back (NotReady, Ready): those updates are the node's, not a relist
    node_updates_before = node_updates(store_objects(lab, "edge-1"))

    # 3. stop edge-1: NotReady after the grace period; meanwhile 3 updates and a delete
    stopped = time.monotonic()  # heartbeats stop while the command runs (it also powers off the node's pods)
    lab.run("node", "stop", "edge-1")
    wait_until(lambda: node_statuses(lab).get("edge-1") == "NotReady", timeout=GRACE + 10, msg="edge-1 NotReady")
    assert time.monotonic() - stopped >= GRACE - 1.5
    assert node_statuses(lab)["edge-2"] == "Ready"
    hello = yaml.safe_load_all((ROOT / "examples" / "hello.yaml").read_text())
    cm = next(d for d in hello if d["kind"] == "ConfigMap")
    for i in range(3):
        cm["data"]["greeting"] = f"update {i + 1}"
        (tmp_path / "cm.yaml").write_text(yaml.safe_dump(cm))
        assert "configured" in lab.run("apply", "-f", str(tmp_path / "cm.yaml")).stdout
    lab.run("delete", "pod", "extra", "--force")  # graceful would wait for edge-1 (it is off)
    err = lab.run("node", "objects", "edge-1", check=False)
    assert err.returncode != 0 and "unreachable" in err.stderr

    # 4. start edge-1: Ready again, latest version only, deleted object gone, one update
    lab.run("node", "start", "edge-1")
    wait_until(lambda: node_statuses(lab).get("edge-1") == "Ready", timeout=30, msg="edge-1 Ready again")

    def synced() -> dict | None:
        o = store_objects(lab, "edge-1")
        return o if "/core/v1/pods/default/extra" not in o and o[cm_key]["object"]["data"]["greeting"] == "update 3" else None

    objs = wait_until(synced, timeout=15, msg="edge-1 caught up")
    assert set(objs) & story == wanted
    assert objs[cm_key]["updates"] == updates_before + 1, "metamanager must receive one update (the latest), not three"

    def sent_besides_the_node() -> int:
        received = lab.json("node", "stats", "edge-1")["received"]
        return int(received - received_before - (node_updates(store_objects(lab, "edge-1")) - node_updates_before))

    # (read twice: a Node update may land between the two reads)
    sent = wait_until(lambda: (n := sent_besides_the_node()) == 2 and n, timeout=10, msg="2 messages besides the node's own Node")
    assert sent == 2, "only the changed ConfigMap and the delete may be sent: no relist"
