"""Small OCI images built offline, for the lab and the tests (no registry needed).

An image is one reproducible gzip layer (fixed mtimes, owners and order, so the same input
gives the same digest), an image config, a manifest and an OCI layout (``oci-layout``,
``index.json`` with the ``io.containerd.image.name`` annotation, ``blobs/sha256/...``)
packed as a tar that ``ctr images import`` (and :mod:`services.edged`'s image load) accept.

The busybox binary comes from Debian's ``busybox-static`` package, fetched with
``apt-get download`` (no root needed) and unpacked with ``dpkg-deb -x``; a static
``/bin/busybox`` already on the machine is used when the download is impossible.

Two images are made (``python -m edgebus.images [DIR]`` builds them into the cache):

* ``docker.io/library/busybox:edgebus`` - busybox with its applets as symlinks, ``/bin/sh``;
* ``registry.k8s.io/pause:3.6`` - the same content with a command that sleeps forever; it
  is the sandbox image of the private containerd the lab and the tests run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX_IMAGE = "docker.io/library/busybox:edgebus"
PAUSE_IMAGE = "registry.k8s.io/pause:3.6"
#: the command of the pause image: PID 1 exits on SIGTERM/SIGINT, sleeps otherwise
PAUSE_CMD = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
DEFAULT_CACHE = Path(os.environ.get("EDGEBUS_IMAGE_CACHE", str(Path.home() / ".cache" / "edgebus" / "images")))
_EPOCH = 0  # every file in a layer gets this mtime: reproducible digests

# The applets a small image needs (busybox --list gives ~270; a link each is cheap, but
# a fixed list keeps the image identical whatever busybox build is used).
APPLETS = (
    "sh ash cat echo env false true sleep ls mkdir rm rmdir cp mv ln pwd printf test [ [[ "
    "grep sed awk head tail wc sort uniq cut tr tee date id whoami hostname uname ps kill "
    "nc wget ping touch chmod chown stat find xargs seq yes expr basename dirname readlink "
    "realpath du df free top vi mount umount dd od hexdump md5sum sha256sum base64 gzip "
    "gunzip tar timeout usleep watch nslookup netstat ip ifconfig"
).split()


class ImageBuildError(RuntimeError):
    """The image cannot be built here (no busybox binary obtainable)."""


@dataclass(frozen=True, slots=True)
class ImageSpec:
    name: str
    cmd: list[str] = field(default_factory=lambda: ["/bin/sh"])
    entrypoint: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    working_dir: str = "/"
    architecture: str = "amd64"


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def _info(name: str, *, mode: int, type_: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = mode
    ti.type = type_
    ti.size = size
    ti.linkname = link
    ti.mtime = _EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def build_layer(busybox: bytes) -> bytes:
    """The uncompressed tar of the root filesystem (deterministic)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "var", "usr", "usr/bin", "home"):
            tar.addfile(_info(d + "/", mode=0o1777 if d == "tmp" else 0o755, type_=tarfile.DIRTYPE))
        tar.addfile(_info("bin/busybox", mode=0o755, size=len(busybox)), io.BytesIO(busybox))
        for applet in APPLETS:
            if applet == "busybox":
                continue
            tar.addfile(_info(f"bin/{applet}", mode=0o777, type_=tarfile.SYMTYPE, link="busybox"))
        etc = {
            "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
            "etc/group": b"root:x:0:\nnobody:x:65534:\n",
            "etc/hosts": b"127.0.0.1 localhost\n",
        }
        for name, data in etc.items():
            tar.addfile(_info(name, mode=0o644, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def oci_archive(spec: ImageSpec, layer_tar: bytes) -> bytes:
    """An OCI image layout as a tar (what ``ctr images import`` takes)."""
    layer_gz = _gzip(layer_tar)
    config = {
        "architecture": spec.architecture,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": spec.env,
            "Cmd": spec.cmd,
            **({"Entrypoint": spec.entrypoint} if spec.entrypoint else {}),
            "WorkingDir": spec.working_dir,
        },
        "rootfs": {"type": "layers", "diff_ids": [_sha(layer_tar)]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "edgebus.images"}],
    }
    config_b = _json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha(config_b), "size": len(config_b)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _sha(layer_gz), "size": len(layer_gz)}],
    }
    manifest_b = _json(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _sha(manifest_b),
                "size": len(manifest_b),
                "platform": {"architecture": spec.architecture, "os": "linux"},
                "annotations": {"io.containerd.image.name": spec.name},
            }
        ],
    }
    files: list[tuple[str, bytes]] = [
        ("oci-layout", _json({"imageLayoutVersion": "1.0.0"})),
        ("index.json", _json(index)),
    ]
    for blob in (layer_gz, config_b, manifest_b):
        files.append((f"blobs/sha256/{_sha(blob).split(':', 1)[1]}", blob))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs/", "blobs/sha256/"):
            tar.addfile(_info(d, mode=0o755, type_=tarfile.DIRTYPE))
        for name, data in files:
            tar.addfile(_info(name, mode=0o644, size=len(data)), io.BytesIO(data))
    return out.getvalue()


def manifest_digest(archive: bytes) -> str:
    """The manifest digest an archive made by :func:`oci_archive` declares."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        f = tar.extractfile("index.json")
        assert f is not None
        return str(json.loads(f.read())["manifests"][0]["digest"])


# -- getting busybox ------------------------------------------------------------------


def _is_static_elf(path: Path) -> bool:
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return False
    # a static executable has no PT_INTERP: no dynamic loader path in its first pages
    return head.startswith(b"\x7fELF") and b"ld-linux" not in head and b"/lib64/ld" not in head


def fetch_busybox(cache: Path = DEFAULT_CACHE) -> Path:
    """A static busybox binary: from Debian's ``busybox-static`` (``apt-get download``,
    cached), else a static ``/bin/busybox`` of this machine."""
    target = cache / "busybox"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            try:
                # run as a user apt can drop to, in a dir it may write: no sandbox warning
                subprocess.run(["apt-get", "download", "-q", "busybox-static"], cwd=tmp, check=True, capture_output=True, timeout=300)
                debs = sorted(Path(tmp).glob("busybox-static_*.deb"))
                if not debs:
                    raise ImageBuildError("apt-get download gave no busybox-static .deb")
                root = Path(tmp, "x")
                subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True, capture_output=True, timeout=120)
                src = root / "bin" / "busybox"
                if not src.exists():
                    raise ImageBuildError("busybox-static has no /bin/busybox")
                shutil.copyfile(src, tmp + "/busybox")
                os.chmod(tmp + "/busybox", 0o755)
                os.replace(tmp + "/busybox", target)
                return target
            except (subprocess.SubprocessError, OSError, ImageBuildError) as exc:
                detail = getattr(exc, "stderr", b"") or b""
                errors.append(f"apt-get download busybox-static: {exc} {detail.decode(errors='replace').strip()}")
    else:
        errors.append("apt-get/dpkg-deb not available")
    local = Path("/bin/busybox")
    if _is_static_elf(local):
        shutil.copyfile(local, target)
        os.chmod(target, 0o755)
        return target
    errors.append("no static /bin/busybox on this machine")
    raise ImageBuildError("cannot get a static busybox: " + "; ".join(errors))


def archive_path(name: str, cache: Path = DEFAULT_CACHE) -> Path:
    safe = name.replace("/", "_").replace(":", "_")
    return cache / f"{safe}.oci.tar"


def build_image(spec: ImageSpec, cache: Path = DEFAULT_CACHE) -> Path:
    """Build (once) the OCI archive of ``spec`` in ``cache``; returns its path."""
    out = archive_path(spec.name, cache)
    if out.exists():
        return out
    busybox = fetch_busybox(cache).read_bytes()
    data = oci_archive(spec, build_layer(busybox))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def lab_images(cache: Path = DEFAULT_CACHE) -> dict[str, Path]:
    """The images every lab node gets: busybox and the sandbox (pause) image."""
    arch = _arch()
    return {
        BUSYBOX_IMAGE: build_image(ImageSpec(BUSYBOX_IMAGE, architecture=arch), cache),
        PAUSE_IMAGE: build_image(ImageSpec(PAUSE_IMAGE, cmd=PAUSE_CMD, architecture=arch), cache),
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cache = Path(args[0]) if args else DEFAULT_CACHE
    try:
        for name, path in lab_images(cache).items():
            print(f"    image {name}: {path}")
    except ImageBuildError as exc:
        print(f"    images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
