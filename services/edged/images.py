"""Images: ``imagePullPolicy``, pull back-off, and importing archives (preload, image load).

* ``IfNotPresent`` (the default for a tagged image): pull only when missing.
* ``Never``: never pull; a missing image is ``ErrImageNeverPull``.
* ``Always`` (the default for ``:latest`` or no tag): pull before each container start;
  when the pull fails and the image is present, the local copy runs (an edge node must
  keep working without its registry) and a warning is logged.

A failed pull shows as ``ErrImagePull``; further attempts wait ``image_backoff_initial``
doubling up to ``backoff_max`` and show ``ImagePullBackOff`` meanwhile (per image, shared
by every pod that uses it).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgebus.cri import CriClient, CriError, RuntimeUnavailable
from edgebus.cri.containerd import import_image
from services.edged.spec import pull_policy
from services.edged.status import backoff_delay

log = logging.getLogger("edgebus.edged.images")


class ImageError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class _Backoff:
    failures: int
    next_at: float
    error: str


class Images:
    def __init__(self, cri: CriClient, *, initial: float, cap: float, pull_timeout: float) -> None:
        self.cri = cri
        self.initial = initial
        self.cap = cap
        self.pull_timeout = pull_timeout
        self._backoff: dict[str, _Backoff] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, container: dict[str, object], note: Callable[[str, str, str], None] | None = None) -> str:
        """Make the container's image available per its pull policy, or raise ImageError.
        Returns ``present`` (nothing pulled) or ``pulled``; ``note(type, reason, message)``
        hears of pulls (``Pulling``, ``Pulled``, ``BackOff``) as the kubelet reports them."""
        image = str(container.get("image") or "")
        say = note or (lambda _t, _r, _m: None)
        policy = pull_policy(container)
        present = await self.cri.image_status(image) is not None
        if policy == "Never":
            if not present:
                raise ImageError("ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never')
            return "present"
        if policy == "IfNotPresent" and present:
            return "present"
        lock = self._locks.setdefault(image, asyncio.Lock())
        async with lock:
            if policy == "IfNotPresent" and await self.cri.image_status(image) is not None:
                return "present"  # pulled by another pod meanwhile
            bo = self._backoff.get(image)
            now = time.time()
            if bo is not None and now < bo.next_at:
                if present:
                    return "present"
                say("Normal", "BackOff", f'Back-off pulling image "{image}"')
                raise ImageError("ImagePullBackOff", f'Back-off pulling image "{image}": {bo.error}')
            say("Normal", "Pulling", f'Pulling image "{image}"')
            t0 = time.monotonic()
            try:
                await self.cri.pull_image(image, timeout=self.pull_timeout)
            except RuntimeUnavailable:
                raise
            except CriError as exc:
                failures = bo.failures + 1 if bo else 1
                self._backoff[image] = _Backoff(failures, now + max(backoff_delay(failures, self.initial, self.cap), self.initial), str(exc))
                say("Warning", "Failed", f'Failed to pull image "{image}": {exc}')
                if present:
                    log.warning("pulling %s failed (%s); running the local copy", image, exc)
                    return "present"
                raise ImageError("ErrImagePull", str(exc)) from None
            self._backoff.pop(image, None)
            say("Normal", "Pulled", f'Successfully pulled image "{image}" in {time.monotonic() - t0:.3g}s')
            log.info("pulled image %s", image)
            return "pulled"


class WasmImages(Images):
    """Modules of Wasm containers: an OCI artifact loaded into the Wasm runtime's module
    store (nothing is pulled: no registry), or none at all when ``command[0]`` names a
    ``.wasm`` file of one of the container's volumes (a ConfigMap key, ...)."""

    async def ensure(self, container: dict[str, object], note: Callable[[str, str, str], None] | None = None) -> str:
        cmd = container.get("command")
        if isinstance(cmd, list) and cmd and str(cmd[0]).endswith(".wasm"):
            return "volume"
        image = str(container.get("image") or "")
        if await self.cri.image_status(image) is not None:
            return "present"
        raise ImageError("ErrImageNeverPull", f'Wasm module image "{image}" is not on this node: load its OCI artifact with `edgebus image load` (modules are not pulled)')


def archive_images(path: str | Path) -> list[str]:
    """Image names an OCI or Docker archive declares (without unpacking it)."""
    names: list[str] = []
    try:
        with tarfile.open(path) as tar:
            for member in ("index.json", "manifest.json"):
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    continue
                if f is None:
                    continue
                doc = json.load(io.TextIOWrapper(f))
                if member == "index.json":
                    for m in doc.get("manifests") or []:
                        n = (m.get("annotations") or {}).get("io.containerd.image.name")
                        if n:
                            names.append(n)
                else:
                    for m in doc or []:
                        names.extend(m.get("RepoTags") or [])
    except (OSError, tarfile.TarError, ValueError) as exc:
        log.warning("cannot read image archive %s: %s", path, exc)
    return names


async def preload(cri: CriClient, address: str, archives: list[str]) -> list[str]:
    """Import each archive whose images are not all present yet; returns what was imported."""
    done: list[str] = []
    for a in archives:
        wanted = archive_images(a)
        missing = [n for n in wanted if await cri.image_status(n) is None]
        if wanted and not missing:
            continue
        try:
            done += await asyncio.to_thread(import_image, address, a)
            log.info("imported image archive %s", a)
        except Exception as exc:
            log.error("importing image archive %s failed: %s", a, exc)
    return done
