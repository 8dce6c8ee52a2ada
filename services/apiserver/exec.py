"""``kubectl exec`` and ``kubectl attach`` on the apiserver: the streaming routes of
:mod:`edgebus.podexec`, the pod's node looked up in the cloud's store and reached through
its leaf link."""

from __future__ import annotations


from edgebus import podexec
from edgebus.edgedclient import EdgedClient
from edgebus.errors import BadRequest
from edgebus.objects import PODS
from edgebus.objectstore import ObjectStore
from edgebus.kubehttp import Routes


def add_routes(routes: Routes, store: ObjectStore) -> None:
    async def locate(namespace: str, name: str) -> EdgedClient:
        pod = await store.get(PODS, namespace, name)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise BadRequest(f'pod "{name}" is not scheduled to a node yet')
        return EdgedClient(store.bus, node, source="apiserver", timeout=15.0)

    podexec.add_routes(routes, locate)
