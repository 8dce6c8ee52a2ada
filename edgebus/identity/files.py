"""Writing identity files: secrets 0600 in 0700 directories, public files 0644, atomically.

Apart from :mod:`edgebus.identity.pki` so that what only reads and writes a node's files (its
services) does not load the X.509 library.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: str | Path, data: bytes | str) -> None:
    """Write a secret atomically with mode 0600 (its directory 0700)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    raw = data.encode() if isinstance(data, str) else data
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)


def write_public(path: str | Path, data: bytes | str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_bytes(raw)
    os.chmod(tmp, 0o644)
    os.replace(tmp, p)
