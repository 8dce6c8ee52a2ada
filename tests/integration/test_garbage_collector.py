"""garbagecollector against a real nats-server (with the apiserver's delete semantics in
the object store): background, foreground and orphan cascades, dangling owners."""

from __future__ import annotations

from typing import Any

from edgebus.errors import NotFound
from edgebus.objects import CONFIGMAPS, DEPLOYMENTS, PODS, REPLICASETS
from edgebus.objectstore import ObjectStore
from edgebus.testing.servers import Hub
from edgebus.testing.waiting import eventually
from tests.integration.workloads import controllers


def deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
        },
    }


async def exists(store: ObjectStore, r: Any, name: str) -> bool:
    try:
        await store.get(r, "default", name)
        return True
    except NotFound:
        return False


async def count(store: ObjectStore, r: Any, label: str) -> int:
    items, _ = await store.list(r, "default", label_selector=label)
    return len(items)


CONTROLLERS = ("garbagecollector", "deploymentcontroller", "replicasetcontroller")


async def rolled(store: ObjectStore, name: str, n: int) -> bool:
    return await count(store, PODS, f"app={name}") == n and await count(store, REPLICASETS, f"app={name}") == 1


async def test_background_cascade(hub: Hub) -> None:
    async with controllers(hub, *CONTROLLERS) as store:
        await store.create(DEPLOYMENTS, deployment("bg"), namespace="default")
        await eventually(lambda: rolled(store, "bg", 2), timeout=15, msg="rolled out")
        await store.delete(DEPLOYMENTS, "default", "bg", propagation="Background")
        assert not await exists(store, DEPLOYMENTS, "bg")  # gone at once

        async def all_gone() -> bool:
            return await count(store, PODS, "app=bg") == 0 and await count(store, REPLICASETS, "app=bg") == 0

        await eventually(all_gone, timeout=15, msg="ReplicaSet and pods collected")


async def test_foreground_cascade_waits_for_dependents(hub: Hub) -> None:
    async with controllers(hub, *CONTROLLERS) as store:
        await store.create(DEPLOYMENTS, deployment("fg"), namespace="default")
        await eventually(lambda: rolled(store, "fg", 2), timeout=15, msg="rolled out")
        out = await store.delete(DEPLOYMENTS, "default", "fg", propagation="Foreground")
        assert out["metadata"]["finalizers"] == ["foregroundDeletion"] and out["metadata"]["deletionTimestamp"]

        async def owner_last() -> bool:
            deps = await count(store, PODS, "app=fg") + await count(store, REPLICASETS, "app=fg")
            there = await exists(store, DEPLOYMENTS, "fg")
            assert there or deps == 0, "the owner went before its dependents"
            return not there

        await eventually(owner_last, timeout=20, msg="foreground deletion")


async def test_orphan_keeps_dependents(hub: Hub) -> None:
    async with controllers(hub, *CONTROLLERS) as store:
        await store.create(DEPLOYMENTS, deployment("or"), namespace="default")
        await eventually(lambda: rolled(store, "or", 2), timeout=15, msg="rolled out")
        await store.delete(DEPLOYMENTS, "default", "or", propagation="Orphan")

        async def orphaned() -> bool:
            items, _ = await store.list(REPLICASETS, "default", label_selector="app=or")
            return not await exists(store, DEPLOYMENTS, "or") and len(items) == 1 and not items[0]["metadata"].get("ownerReferences")

        await eventually(orphaned, timeout=15, msg="ReplicaSet orphaned")
        assert await count(store, PODS, "app=or") == 2


async def test_dangling_and_partial_owners(hub: Hub) -> None:
    async with controllers(hub, "garbagecollector") as store:
        a = await store.create(CONFIGMAPS, {"metadata": {"name": "a"}}, namespace="default")
        b = await store.create(CONFIGMAPS, {"metadata": {"name": "b"}}, namespace="default")

        def ref(o: dict[str, Any]) -> dict[str, Any]:
            return {"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}

        await store.create(CONFIGMAPS, {"metadata": {"name": "both", "ownerReferences": [ref(a), ref(b)]}}, namespace="default")
        await store.create(CONFIGMAPS, {"metadata": {"name": "only-a", "ownerReferences": [ref(a)]}}, namespace="default")
        foreign = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "0000"}
        await store.create(CONFIGMAPS, {"metadata": {"name": "foreign", "ownerReferences": [foreign]}}, namespace="default")
        await store.delete(CONFIGMAPS, "default", "a")

        async def collected() -> bool:
            both = await store.get(CONFIGMAPS, "default", "both")
            return not await exists(store, CONFIGMAPS, "only-a") and [r["name"] for r in both["metadata"]["ownerReferences"]] == ["b"]

        await eventually(collected, timeout=15, msg="only-a deleted, both keeps b")
        assert await exists(store, CONFIGMAPS, "foreign")  # an owner kind edgebus does not serve is never judged gone
