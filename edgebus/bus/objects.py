"""JetStream Object Store buckets (large blobs in chunks), in edgebus's own terms.

Used to carry image archives from the cloud to a node (``edgebus image load``): the CLI puts
the file into a bucket of the cloud domain; the node's edged reads it across the leaf link
(``domain="cloud"``) into a local file. Objects are chunked (128 KiB), and a read checks the
SHA-256 digest of the whole object.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from pathlib import Path

import nats.js.errors
from nats.js import api
from nats.js.object_store import ObjectStore

from edgebus.bus.connection import Bus
from edgebus.bus.errors import BusError
from edgebus.bus.streams import _wrap

log = logging.getLogger("edgebus.bus")


class ObjectNotFound(BusError):
    """No such object (or bucket)."""


class ObjectTooLarge(BusError):
    """The object is larger than the reader accepts (counted as its bytes arrive)."""


class _Capped:
    """A file that refuses to grow past ``limit`` bytes."""

    def __init__(self, f: object, limit: int) -> None:
        self.f = f
        self.limit = limit
        self.written = 0

    def write(self, b: bytes) -> int:
        self.written += len(b)
        if self.written > self.limit:
            raise ObjectTooLarge(f"more than {self.limit} bytes")
        return self.f.write(b)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    #: hex SHA-256 of the content
    sha256: str
    chunks: int


def _info(i: api.ObjectInfo) -> ObjectInfo:
    digest = (i.digest or "").split("=", 1)[-1]
    try:
        hexd = base64.urlsafe_b64decode(digest).hex() if digest else ""
    except (ValueError, TypeError):
        hexd = ""
    return ObjectInfo(name=i.name or "", size=int(i.size or 0), sha256=hexd, chunks=int(i.chunks or 0))


class ObjectBucket:
    def __init__(self, bus: Bus, bucket: str, *, domain: str | None = None) -> None:
        self.bus = bus
        self.bucket = bucket
        self.domain = domain

    async def _store(self) -> ObjectStore:
        try:
            return await self.bus.js(self.domain).object_store(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            raise ObjectNotFound(f"object bucket {self.bucket} does not exist") from None
        except Exception as exc:
            raise _wrap(exc, f"object bucket {self.bucket}") from exc

    async def ensure(self, *, max_bytes: int = -1, ttl: float = 0.0, replicas: int = 1) -> None:
        """Create the bucket if it does not exist."""
        js = self.bus.js(self.domain)
        try:
            try:
                await js.object_store(self.bucket)
                return
            except nats.js.errors.BucketNotFoundError:
                pass
            await js.create_object_store(
                self.bucket,
                config=api.ObjectStoreConfig(bucket=self.bucket, max_bytes=max_bytes, ttl=ttl or None, replicas=self.bus.replicas_for(replicas, self.domain), storage=api.StorageType.FILE),
            )
            log.info("created object bucket %s", self.bucket)
        except Exception as exc:
            raise _wrap(exc, f"object bucket {self.bucket}") from exc

    async def put_file(self, name: str, path: str | Path) -> ObjectInfo:
        store = await self._store()
        try:
            with open(path, "rb") as f:
                info = await store.put(name, f)
        except OSError:
            raise
        except Exception as exc:
            raise _wrap(exc, f"put {name} into {self.bucket}") from exc
        return _info(info)

    async def info(self, name: str) -> ObjectInfo | None:
        store = await self._store()
        try:
            return _info(await store.get_info(name))
        except nats.js.errors.ObjectNotFoundError:
            return None
        except Exception as exc:
            raise _wrap(exc, f"info {name} in {self.bucket}") from exc

    async def get_file(self, name: str, path: str | Path, *, max_bytes: int | None = None) -> ObjectInfo:
        """Write the object into ``path`` (digest checked). With ``max_bytes``, the bytes are
        counted as they arrive and the read stops with :class:`ObjectTooLarge` past it,
        whatever size the object's metadata claims."""
        store = await self._store()
        try:
            with open(path, "wb") as f:
                sink = f if max_bytes is None else _Capped(f, max_bytes)
                res = await store.get(name, writeinto=sink)  # type: ignore[arg-type]
        except ObjectTooLarge as exc:
            raise ObjectTooLarge(f"object {name} in {self.bucket} has {exc}") from None
        except nats.js.errors.ObjectNotFoundError:
            raise ObjectNotFound(f"object {name} is not in bucket {self.bucket}") from None
        except nats.js.errors.DigestMismatchError:
            raise BusError(f"object {name} arrived corrupted (SHA-256 mismatch)") from None
        except OSError:
            raise
        except Exception as exc:
            raise _wrap(exc, f"get {name} from {self.bucket}") from exc
        return _info(res.info)

    async def delete(self, name: str) -> None:
        store = await self._store()
        try:
            await store.delete(name)
        except nats.js.errors.ObjectNotFoundError:
            return
        except Exception as exc:
            raise _wrap(exc, f"delete {name} from {self.bucket}") from exc
