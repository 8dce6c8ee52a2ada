"""An asyncio client of the Kubernetes Container Runtime Interface (``runtime.v1``) over gRPC.

The messages are those of the ``container-runtime-interface-api`` package
(``cri_api.v1.api_pb2``), re-exported as :data:`edgebus.cri.api`; only this package imports
``grpc`` and ``cri_api``. gRPC failures become edgebus errors:

* :class:`RuntimeUnavailable` (a :class:`~edgebus.errors.RetryLater`) - the socket does not
  answer (containerd down or restarting);
* :class:`CriNotFound` - the sandbox, container or image does not exist;
* :class:`CriTimeout` - the call did not finish in time;
* :class:`CriError` - anything else the runtime refused, with its message.

Every call is timed into the ``edgebus_cri_seconds{method}`` histogram, so the time spent
inside containerd can be told apart from edgebus's own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from cri_api.v1 import api_pb2 as api
from cri_api.v1 import api_pb2_grpc as rpc
from prometheus_client import Histogram

from edgebus.errors import EdgebusError, RetryLater

T = TypeVar("T")

CRI_SECONDS = Histogram(
    "edgebus_cri_seconds",
    "Time spent in CRI calls to the container runtime, by method",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class CriError(EdgebusError):
    """The runtime refused a request."""

    def __init__(self, message: str, *, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


class CriNotFound(CriError):
    """The object does not exist in the runtime."""


class RuntimeUnavailable(CriError, RetryLater):
    """The runtime's socket does not answer."""

    def __init__(self, message: str) -> None:
        CriError.__init__(self, message, code="UNAVAILABLE")
        self.delay = 1.0


class CriTimeout(CriError, RetryLater):
    def __init__(self, message: str) -> None:
        CriError.__init__(self, message, code="DEADLINE_EXCEEDED")
        self.delay = 1.0


def _wrap(method: str, exc: grpc.aio.AioRpcError, address: str) -> CriError:
    code = exc.code()
    details = exc.details() or str(code)
    if code == grpc.StatusCode.UNAVAILABLE:
        return RuntimeUnavailable(f"container runtime at {address} is unavailable: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CriTimeout(f"{method} timed out: {details}")
    if code == grpc.StatusCode.NOT_FOUND:
        return CriNotFound(f"{method}: {details}", code="NOT_FOUND")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CriError(f"{method} is not implemented by the runtime: {details}", code="UNIMPLEMENTED")
    return CriError(f"{method}: {details}", code=code.name if code else "UNKNOWN")


class CriClient:
    """One gRPC channel to a CRI socket (``unix:///path/to/containerd.sock``)."""

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address if "://" in address else f"unix://{address}"
        self.timeout = timeout
        self._channel: grpc.aio.Channel | None = None
        self._rt: rpc.RuntimeServiceStub | None = None
        self._img: rpc.ImageServiceStub | None = None

    def _stubs(self) -> tuple[rpc.RuntimeServiceStub, rpc.ImageServiceStub]:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.address, options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.enable_retries", 0)]
            )
            self._rt = rpc.RuntimeServiceStub(self._channel)
            self._img = rpc.ImageServiceStub(self._channel)
        assert self._rt is not None and self._img is not None
        return self._rt, self._img

    async def connection_changed(self, timeout: float) -> bool:
        """Wait until the channel's connection changes state (the runtime closed it: containerd
        stopped or restarted), at most ``timeout`` seconds; True if it changed. An event, not a
        poll: a node whose runtime is fine makes no call to learn that it still is."""
        self._stubs()
        assert self._channel is not None
        state = self._channel.get_state(try_to_connect=False)
        try:
            await asyncio.wait_for(self._channel.wait_for_state_change(state), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _call(self, method: str, fn: Callable[..., Awaitable[T]], req: Any, timeout: float | None = None) -> T:
        t0 = time.perf_counter()
        try:
            return await fn(req, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _wrap(method, exc, self.address) from None
        finally:
            CRI_SECONDS.labels(method).observe(time.perf_counter() - t0)

    # -- runtime ----------------------------------------------------------------------
    async def version(self, timeout: float | None = None) -> api.VersionResponse:
        rt, _ = self._stubs()
        return await self._call("Version", rt.Version, api.VersionRequest(version="v1"), timeout)

    async def status(self) -> api.StatusResponse:
        rt, _ = self._stubs()
        return await self._call("Status", rt.Status, api.StatusRequest())

    async def run_pod_sandbox(self, config: api.PodSandboxConfig, *, timeout: float | None = None) -> str:
        rt, _ = self._stubs()
        resp = await self._call("RunPodSandbox", rt.RunPodSandbox, api.RunPodSandboxRequest(config=config), timeout or max(self.timeout, 60))
        return str(resp.pod_sandbox_id)

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        rt, _ = self._stubs()
        await self._call("StopPodSandbox", rt.StopPodSandbox, api.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), max(self.timeout, 30))

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        rt, _ = self._stubs()
        await self._call("RemovePodSandbox", rt.RemovePodSandbox, api.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), max(self.timeout, 30))

    async def pod_sandbox_status(self, sandbox_id: str) -> api.PodSandboxStatus:
        rt, _ = self._stubs()
        resp = await self._call("PodSandboxStatus", rt.PodSandboxStatus, api.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id))
        return resp.status

    async def list_pod_sandbox(self, labels: dict[str, str] | None = None) -> list[api.PodSandbox]:
        rt, _ = self._stubs()
        f = api.PodSandboxFilter(label_selector=labels or {})
        resp = await self._call("ListPodSandbox", rt.ListPodSandbox, api.ListPodSandboxRequest(filter=f))
        return list(resp.items)

    async def create_container(self, sandbox_id: str, config: api.ContainerConfig, sandbox_config: api.PodSandboxConfig) -> str:
        rt, _ = self._stubs()
        req = api.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config)
        resp = await self._call("CreateContainer", rt.CreateContainer, req, max(self.timeout, 60))
        return str(resp.container_id)

    async def start_container(self, container_id: str) -> None:
        rt, _ = self._stubs()
        await self._call("StartContainer", rt.StartContainer, api.StartContainerRequest(container_id=container_id), max(self.timeout, 60))

    async def stop_container(self, container_id: str, grace_seconds: int) -> None:
        """SIGTERM (or the image's stop signal), SIGKILL after ``grace_seconds``; waits."""
        rt, _ = self._stubs()
        req = api.StopContainerRequest(container_id=container_id, timeout=max(int(grace_seconds), 0))
        await self._call("StopContainer", rt.StopContainer, req, grace_seconds + max(self.timeout, 15))

    async def remove_container(self, container_id: str) -> None:
        rt, _ = self._stubs()
        await self._call("RemoveContainer", rt.RemoveContainer, api.RemoveContainerRequest(container_id=container_id), max(self.timeout, 30))

    async def list_containers(self, labels: dict[str, str] | None = None, *, sandbox_id: str = "") -> list[api.Container]:
        rt, _ = self._stubs()
        f = api.ContainerFilter(label_selector=labels or {}, pod_sandbox_id=sandbox_id)
        resp = await self._call("ListContainers", rt.ListContainers, api.ListContainersRequest(filter=f))
        return list(resp.containers)

    async def container_status(self, container_id: str) -> api.ContainerStatus:
        rt, _ = self._stubs()
        resp = await self._call("ContainerStatus", rt.ContainerStatus, api.ContainerStatusRequest(container_id=container_id))
        return resp.status

    async def container_pid(self, container_id: str) -> int:
        """The host PID of the container's main process (0 when not running)."""
        import json

        rt, _ = self._stubs()
        req = api.ContainerStatusRequest(container_id=container_id, verbose=True)
        resp = await self._call("ContainerStatus", rt.ContainerStatus, req)
        try:
            return int(json.loads(resp.info.get("info", "{}")).get("pid") or 0)
        except (ValueError, TypeError):
            return 0

    async def exec_sync(self, container_id: str, cmd: list[str], *, timeout: float) -> tuple[int, bytes, bytes]:
        """Run ``cmd`` in the container; (exit code, stdout, stderr)."""
        rt, _ = self._stubs()
        req = api.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=max(int(timeout), 1))
        resp = await self._call("ExecSync", rt.ExecSync, req, timeout + 5)
        return int(resp.exit_code), bytes(resp.stdout), bytes(resp.stderr)

    # -- streaming (the runtime answers with a URL of its streaming server) ----------
    async def exec_url(self, container_id: str, cmd: list[str], *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> str:
        rt, _ = self._stubs()
        req = api.ExecRequest(container_id=container_id, cmd=cmd, stdin=stdin, stdout=stdout, stderr=stderr if not tty else False, tty=tty)
        return str((await self._call("Exec", rt.Exec, req)).url)

    async def attach_url(self, container_id: str, *, stdin: bool, stdout: bool, stderr: bool, tty: bool) -> str:
        rt, _ = self._stubs()
        req = api.AttachRequest(container_id=container_id, stdin=stdin, stdout=stdout, stderr=stderr if not tty else False, tty=tty)
        return str((await self._call("Attach", rt.Attach, req)).url)

    async def port_forward_url(self, sandbox_id: str, ports: list[int]) -> str:
        rt, _ = self._stubs()
        req = api.PortForwardRequest(pod_sandbox_id=sandbox_id, port=ports)
        return str((await self._call("PortForward", rt.PortForward, req)).url)

    # -- images -----------------------------------------------------------------------
    async def image_status(self, image: str) -> api.Image | None:
        _, img = self._stubs()
        resp = await self._call("ImageStatus", img.ImageStatus, api.ImageStatusRequest(image=api.ImageSpec(image=image)))
        return resp.image if resp.HasField("image") else None

    async def pull_image(self, image: str, *, timeout: float = 300.0) -> str:
        _, img = self._stubs()
        resp = await self._call("PullImage", img.PullImage, api.PullImageRequest(image=api.ImageSpec(image=image)), timeout)
        return str(resp.image_ref)

    async def list_images(self) -> list[api.Image]:
        _, img = self._stubs()
        resp = await self._call("ListImages", img.ListImages, api.ListImagesRequest())
        return list(resp.images)

    async def remove_image(self, image: str) -> None:
        _, img = self._stubs()
        await self._call("RemoveImage", img.RemoveImage, api.RemoveImageRequest(image=api.ImageSpec(image=image)))


async def remove_all(client: CriClient, labels: dict[str, str] | None = None, *, remove: bool = True) -> int:
    """Stop (and with ``remove`` also delete) every sandbox matching ``labels``, and their
    containers; returns how many sandboxes there were. Used to power a node off (stop)
    and to leave nothing behind (remove)."""
    boxes = await client.list_pod_sandbox(labels)
    for b in boxes:
        try:
            await client.stop_pod_sandbox(b.id)
        except CriNotFound:
            continue
    if remove:
        for c in await client.list_containers(labels):
            try:
                await client.remove_container(c.id)
            except CriNotFound:
                pass
        for b in boxes:
            try:
                await client.remove_pod_sandbox(b.id)
            except CriNotFound:
                pass
    return len(boxes)
