"""The runtimes edged drives, behind the one CRI-shaped interface its pod workers use:
containerd (CRI over gRPC) and, beside it, the Wasm runtime (:mod:`edgebus.wasm`).

The runtime is chosen **per pod**: a pod whose ``runtimeClassName`` is one of
``wasm_runtime_classes`` gets a sandbox labelled ``io.edgebus.runtime-handler=wasm``,
which :meth:`Runtimes.run_pod_sandbox` sends to the Wasm runtime; every later call names a
sandbox or container ID, and Wasm IDs start with ``wasm-``. Listings merge both runtimes
(containerd's part is left out while containerd is unavailable, so Wasm pods keep being
managed on a node without containerd). Image calls go to the pod's runtime through
:meth:`Runtimes.for_handler`.
"""

from __future__ import annotations

from typing import Any

from edgebus.cri import CriClient, CriError, api
from edgebus.wasm.runtime import HANDLER as WASM
from edgebus.wasm.runtime import WasmRuntime
from services.edged.spec import LABEL_HANDLER



class Runtimes:
    def __init__(self, cri: CriClient, wasm: WasmRuntime | None) -> None:
        self.cri = cri
        self.wasm = wasm
        #: whether containerd answers (kept by edged's runtime monitor)
        self.cri_ok = False

    def for_handler(self, handler: str | None) -> Any:
        if handler == WASM:
            if self.wasm is None:
                raise CriError("this node does not run Wasm pods (wasmtime is not installed, or edged.wasm_enabled is false)")
            return self.wasm
        return self.cri

    def _by_id(self, obj_id: str) -> Any:
        return self.wasm if self.wasm is not None and WasmRuntime.owns(obj_id) else self.cri

    async def close(self) -> None:
        await self.cri.close()

    async def version(self, timeout: float | None = None) -> api.VersionResponse:
        return await self.cri.version(timeout=timeout)

    async def run_pod_sandbox(self, config: api.PodSandboxConfig, *, timeout: float | None = None) -> str:
        return await self.for_handler(config.labels.get(LABEL_HANDLER)).run_pod_sandbox(config, timeout=timeout)

    async def list_pod_sandbox(self, labels: dict[str, str] | None = None) -> list[api.PodSandbox]:
        out = list(await self.wasm.list_pod_sandbox(labels)) if self.wasm is not None else []
        if self.cri_ok or self.wasm is None:
            out += await self.cri.list_pod_sandbox(labels)
        return out

    async def list_containers(self, labels: dict[str, str] | None = None, *, sandbox_id: str = "") -> list[api.Container]:
        if sandbox_id:
            return list(await self._by_id(sandbox_id).list_containers(labels, sandbox_id=sandbox_id))
        out = list(await self.wasm.list_containers(labels)) if self.wasm is not None else []
        if self.cri_ok or self.wasm is None:
            out += await self.cri.list_containers(labels)
        return out

    async def create_container(self, sandbox_id: str, config: api.ContainerConfig, sandbox_config: api.PodSandboxConfig) -> str:
        return str(await self._by_id(sandbox_id).create_container(sandbox_id, config, sandbox_config))

    # every other call names its sandbox or container
    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        await self._by_id(sandbox_id).stop_pod_sandbox(sandbox_id)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        await self._by_id(sandbox_id).remove_pod_sandbox(sandbox_id)

    async def pod_sandbox_status(self, sandbox_id: str) -> api.PodSandboxStatus:
        return await self._by_id(sandbox_id).pod_sandbox_status(sandbox_id)

    async def start_container(self, container_id: str) -> None:
        await self._by_id(container_id).start_container(container_id)

    async def stop_container(self, container_id: str, grace_seconds: int) -> None:
        await self._by_id(container_id).stop_container(container_id, grace_seconds)

    async def remove_container(self, container_id: str) -> None:
        await self._by_id(container_id).remove_container(container_id)

    async def container_status(self, container_id: str) -> api.ContainerStatus:
        return await self._by_id(container_id).container_status(container_id)

    async def container_pid(self, container_id: str) -> int:
        return int(await self._by_id(container_id).container_pid(container_id))

    async def exec_sync(self, container_id: str, cmd: list[str], *, timeout: float) -> tuple[int, bytes, bytes]:
        return await self._by_id(container_id).exec_sync(container_id, cmd, timeout=timeout)

    async def exec_url(self, container_id: str, cmd: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> str:
        return str(await self._by_id(container_id).exec_url(container_id, cmd, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty))

    async def attach_url(self, container_id: str, *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> str:
        return str(await self._by_id(container_id).attach_url(container_id, stdin=stdin, stdout=stdout, stderr=stderr, tty=tty))

    async def port_forward_url(self, sandbox_id: str, ports: list[int]) -> str:
        return str(await self._by_id(sandbox_id).port_forward_url(sandbox_id, ports))

    # images: containerd's (the Wasm runtime's modules are reached through for_handler)
    async def image_status(self, image: str) -> api.Image | None:
        return await self.cri.image_status(image)

    async def pull_image(self, image: str, *, timeout: float = 300.0) -> str:
        return await self.cri.pull_image(image, timeout=timeout)

    async def list_images(self) -> list[api.Image]:
        return await self.cri.list_images()

    async def remove_image(self, image: str) -> None:
        await self.cri.remove_image(image)
