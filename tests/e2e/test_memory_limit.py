"""A node under a hard memory limit: edge-1 all in one process, it and its nats-server in a
192 MB memory cgroup of their own (cgroup v1), goes through the partition scenario (changes on
both sides while cut off, heal, a cloud server restart) and the offline reboot scenario
(power off and on while offline, pods back from LMDB) - and the kernel never has to OOM-kill
anything. containerd and the pods' containers run in cgroups of their own, outside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgebus.objects import CONFIGMAPS, PODS
from edgebus.testing.cgroups import MemoryCgroup, skip_reason
from edgebus.testing.containerd import skip_reason as containerd_skip_reason
from edgebus.testing.waiting import eventually

from .conftest import start_lab, stop_lab
from .test_partition import N_CM, partition_then_cloud_restart
from .test_pods import offline_reboot

pytestmark = pytest.mark.e2e

LIMIT = 192 << 20
NODE = "edge-1"


@pytest.fixture
def cgroup():
    why = skip_reason() or containerd_skip_reason()
    if why:
        pytest.skip(why)
    cg = MemoryCgroup(f"edgebus-test-{os.getpid()}", LIMIT)
    try:
        yield cg
    finally:
        cg.remove()


async def test_node_in_192mb_through_partition_and_offline_reboot(tmp_path: Path, cgroup: MemoryCgroup) -> None:
    names = {f"{NODE}/nats": str(cgroup.path), f"{NODE}/allinone": str(cgroup.path)}
    rl = await start_lab(tmp_path, proxy=True, all_in_one=True, cgroups=names)
    try:
        inside = set(cgroup.pids())
        assert {rl.lab.procs[n].popen.pid for n in names} <= inside, "the node's processes run in the cgroup"  # type: ignore[union-attr]
        await partition_then_cloud_restart(rl)
        after_partition = cgroup.max_usage

        # the partition scenario's objects go, so the node holds only the reboot scenario's pods
        for p in (await rl.store.list(PODS, "default"))[0]:
            await rl.store.delete(PODS, "default", p["metadata"]["name"], grace_period_seconds=0)
        for i in range(N_CM):
            await rl.store.delete(CONFIGMAPS, "default", f"cm-{i:02d}")

        async def empty() -> bool:
            return not (await rl.meta.list("pods"))["items"]

        await eventually(empty, timeout=30, msg="the node's pods gone")
        await offline_reboot(rl)
        assert {rl.lab.procs[n].popen.pid for n in names} <= set(cgroup.pids()), "restarted inside the cgroup too"  # type: ignore[union-attr]
        rss = sum(_rss(pid) for pid in cgroup.pids())
        print(
            f"\nmemory cgroup {LIMIT >> 20} MB: processes' RSS now {rss:.1f} MB; charged to the cgroup: peak {cgroup.max_usage / 2**20:.1f} MB (after the partition {after_partition / 2**20:.1f} MB),"
            f" limit hit {cgroup.failcnt} times, OOM kills {cgroup.oom_kills}"
        )
        assert cgroup.oom_kills == 0, "the kernel OOM-killed a process of the node"
        assert all(rl.lab.procs[n].restarts == 0 for n in names), "no process of the node died"
    finally:
        await stop_lab(rl)


def _rss(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
