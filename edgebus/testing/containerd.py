"""A private containerd for tests and benchmarks, with the offline images imported.

Tests that need containers call :func:`skip_reason` first and skip with its message when
it is not None (not root, containerd/runc not installed, images not buildable); CI runs as
root with containerd installed by ``./dev``, so they run there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edgebus.cri import CriClient, remove_all
from edgebus.cri.containerd import Containerd, ContainerdConfig, import_image, usable
from edgebus.images import ImageBuildError, lab_images


def skip_reason() -> str | None:
    why = usable()
    if why:
        return f"needs a private containerd: {why}"
    try:
        lab_images()
    except ImageBuildError as exc:
        return f"cannot build the test images offline: {exc}"
    return None


def start_containerd(root: Path) -> Containerd:
    """Start containerd in ``root`` (its own sockets, state and runc root) and import the
    busybox and pause images."""
    c = Containerd(ContainerdConfig(str(root)))
    c.start(die_with_parent=True)
    c.wait_ready()
    for path in lab_images().values():
        import_image(c.address, path)
    return c


async def wipe(address: str, labels: dict[str, str] | None = None) -> int:
    """Remove every sandbox and container (matching ``labels``)."""
    cri = CriClient(address)
    try:
        return await remove_all(cri, labels)
    finally:
        await cri.close()


def stop_containerd(c: Containerd) -> None:
    """Remove every pod, stop containerd, remove its directories: nothing is left."""
    try:
        asyncio.run(wipe(c.address))
    except Exception:
        pass
    c.stop()
    c.remove_dirs()
