"""The Wasm module store: modules by image name, imported from OCI image archives.

A Wasm module ships as an OCI artifact (the Wasm OCI conventions of the CNCF TAG Runtime's
wasm working group, as ``wasm-to-oci``/``oras`` write them): an image manifest whose config
has media type ``application/vnd.wasm.config.v0+json`` (or any config) and exactly **one
layer** whose media type names Wasm (``application/wasm``,
``application/vnd.wasm.content.layer.v1+wasm``, ``application/vnd.module.wasm.content.layer.v1+wasm``).
An OCI image layout tar (``index.json``, ``blobs/sha256/...``) holding such manifests is
imported here: each module is stored once by digest, and named by the
``io.containerd.image.name`` (or ``org.opencontainers.image.ref.name``) annotation of its
descriptor in ``index.json`` - the same archive ``edgebus image load`` ships for container
images. :func:`write_archive` writes one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

WASM_LAYER_TYPES = (
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
)
WASM_CONFIG_TYPE = "application/vnd.wasm.config.v0+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


class NotWasm(ValueError):
    """The archive holds no Wasm artifact (a container image, or not an OCI layout)."""


def normalize(name: str) -> str:
    """``hello`` and ``docker.io/library/hello:latest`` name the same image (as containerd)."""
    n = name.strip()
    if "@" not in n and ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    first = n.split("/", 1)[0]
    if "/" not in n:
        n = "docker.io/library/" + n
    elif "." not in first and ":" not in first and first != "localhost":
        n = "docker.io/" + n
    return n


def _blob(tar: tarfile.TarFile, digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    f = tar.extractfile(f"blobs/{algo}/{hexd}")
    if f is None:
        raise KeyError(digest)
    data = f.read()
    if algo == "sha256" and hashlib.sha256(data).hexdigest() != hexd:
        raise ValueError(f"blob {digest} does not match its digest")
    return data


def read_archive(path: str | Path) -> list[tuple[str, bytes]]:
    """(image name, module bytes) of every Wasm artifact in an OCI layout tar."""
    found: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(path) as tar:
            try:
                f = tar.extractfile("index.json")
            except KeyError:
                raise NotWasm("not an OCI image layout (no index.json)") from None
            if f is None:
                raise NotWasm("not an OCI image layout")
            index = json.load(f)

            def visit(desc: dict[str, Any], names: list[str], depth: int) -> None:
                mt = desc.get("mediaType")
                doc = json.loads(_blob(tar, str(desc["digest"])))
                if (mt or doc.get("mediaType")) == INDEX_TYPE or "manifests" in doc:
                    if depth < 2:
                        for d in doc.get("manifests") or []:
                            visit(d, names, depth + 1)
                    return
                layers = doc.get("layers") or []
                if len(layers) == 1 and layers[0].get("mediaType") in WASM_LAYER_TYPES:
                    data = _blob(tar, str(layers[0]["digest"]))
                    for n in names:
                        found.append((n, data))

            for d in index.get("manifests") or []:
                ann = d.get("annotations") or {}
                names = [normalize(ann[k]) for k in NAME_ANNOTATIONS if ann.get(k)][:1]
                visit(d, names, 0)
    except (tarfile.TarError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise NotWasm(f"cannot read {path}: {exc}") from None
    if not found:
        raise NotWasm("no Wasm artifact (a manifest with one Wasm layer) in the archive")
    return found


def write_archive(path: str | Path, name: str, module: bytes) -> None:
    """An OCI image layout tar with one Wasm artifact named ``name``."""
    config = b"{}"
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> dict[str, Any]:
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return {"digest": d, "size": len(data)}

    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": WASM_CONFIG_TYPE,
        "config": {"mediaType": WASM_CONFIG_TYPE, **add(config)},
        "layers": [{"mediaType": "application/wasm", **add(module), "annotations": {"org.opencontainers.image.title": "module.wasm"}}],
    }
    mdesc = {"mediaType": MANIFEST_TYPE, **add(json.dumps(manifest).encode()), "annotations": {"io.containerd.image.name": normalize(name), "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1] if ":" in name else "latest"}}
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [mdesc]}
    with tarfile.open(path, "w") as tar:
        for fname, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", json.dumps(index).encode())] + [(f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items()]:
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class ModuleStore:
    """Modules by digest under ``root``, names in ``names.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def _names_file(self) -> Path:
        return self.root / "names.json"

    def names(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._names_file.read_text()))
        except (OSError, ValueError):
            return {}

    def import_archive(self, path: str | Path) -> list[str]:
        """Store every Wasm artifact of the archive; returns the image names (raises
        :class:`NotWasm` when there is none)."""
        found = read_archive(path)
        self.root.mkdir(parents=True, exist_ok=True)
        names = self.names()
        for name, data in found:
            digest = hashlib.sha256(data).hexdigest()
            target = self.root / f"{digest}.wasm"
            if not target.exists():
                tmp = target.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)
            names[name] = digest
        tmp = self._names_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(names, sort_keys=True))
        os.replace(tmp, self._names_file)
        return [n for n, _ in found]

    def lookup(self, image: str) -> tuple[Path, str] | None:
        """(module file, digest) of an image name, or None."""
        digest = self.names().get(normalize(image)) if image else None
        if digest is None:
            return None
        p = self.root / f"{digest}.wasm"
        return (p, digest) if p.exists() else None

    def remove(self, image: str) -> None:
        names = self.names()
        if names.pop(normalize(image), None) is not None:
            self._names_file.write_text(json.dumps(names, sort_keys=True))
