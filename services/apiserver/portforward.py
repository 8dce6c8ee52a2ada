"""``kubectl port-forward`` on the apiserver: the routes of :mod:`edgebus.podportforward`,
the pod's node looked up in the cloud's store (the pod must be scheduled and not finished)
and reached through its leaf link."""

from __future__ import annotations


from edgebus import podportforward
from edgebus.edgedclient import EdgedClient
from edgebus.errors import BadRequest
from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore
from edgebus.kubehttp import Routes


def add_routes(routes: Routes, store: ObjectStore) -> None:
    async def locate(namespace: str, name: str) -> EdgedClient:
        pod = await store.get(PODS, namespace, name)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or ((pod.get("status") or {}).get("phase") not in (None, "Pending", "Running")):
            raise BadRequest(f"unable to forward ports: pod {name} is not running")
        return EdgedClient(store.bus, node, source="apiserver")

    podportforward.add_routes(routes, locate)
