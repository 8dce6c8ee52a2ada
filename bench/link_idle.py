"""Idle link traffic of one real edge node: bytes on its leaf connection per second.

A secure hub, one node's leaf server dialing it through a byte-counting loopback proxy (the
bytes counted are the ones on the wire: TLS, the leaf's compression, NATS pings, the
downstream's pulls), and the node's real edgehub (heartbeats
every 10 s, node status every 60 s, the forwarder, the downstream). Nothing else
runs: the node is idle (no pods, no devices). Measured twice in the same process:

1. baseline: edgehub checks the link by asking the cloud's JetStream API every second
   (``link_probe=jetstream``, what edgehub did before);
2. edgehub asks its own server's ``LEAFZ`` (``link_probe=leafz``), woken by its connection advisories.

    .venv/bin/python bench/link_idle.py [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgebus.testing.servers import start_hub  # noqa: E402
from edgebus.testing.services import edgehub_on_leaf  # noqa: E402
from edgebus.testing.waiting import eventually  # noqa: E402

KUBEEDGE_KBIT_S = 0.25


async def measure(root: Path, probe: str, seconds: float) -> tuple[float, float]:
    hub = start_hub(root)
    try:
        async with edgehub_on_leaf(hub, root, link_probe=probe) as rig:
            await rig.start()
            hub_ctx = rig.ctx
            await eventually(lambda: hub_ctx.link.up, timeout=60, msg="link up")
            await asyncio.sleep(15)  # joined, first status sent, consumers settled
            up0, down0, t0 = rig.proxy.bytes_up, rig.proxy.bytes_down, time.monotonic()
            await asyncio.sleep(seconds)
            dt = time.monotonic() - t0
            assert hub_ctx.link.up, "the link went down during the measurement"
            return (rig.proxy.bytes_up - up0) * 8 / 1000 / dt, (rig.proxy.bytes_down - down0) * 8 / 1000 / dt
    finally:
        hub.server.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    args = ap.parse_args()
    out = {}
    for probe in ("jetstream", "leafz"):
        with tempfile.TemporaryDirectory(prefix="edgebus-link-") as d:
            up, down = await measure(Path(d), probe, args.seconds)
        out[probe] = (up, down)
        print(f"link_probe={probe:9s}  up {up:6.3f} kbit/s  down {down:6.3f} kbit/s  (over {args.seconds:.0f} s, idle node, wire bytes)")
    (bu, bd), (lu, ld) = out["jetstream"], out["leafz"]
    print(f"ratio leafz/jetstream: up {lu / bu:.2f}  down {ld / bd:.2f}; KubeEdge's uplink per node: {KUBEEDGE_KBIT_S} kbit/s (up now {lu / KUBEEDGE_KBIT_S:.2f}x)")
    print(f"RESULT idle_up_kbit_s={lu:.3f} idle_down_kbit_s={ld:.3f} baseline_up_kbit_s={bu:.3f} baseline_down_kbit_s={bd:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
