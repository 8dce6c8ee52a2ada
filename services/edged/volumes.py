"""Per-pod directories: volumes and container logs.

``<data_dir>/pods/<namespace>_<name>_<uid>/``

* ``logs/``                         the sandbox's CRI log directory (``<container>/<attempt>.log``)
* ``volumes/configmap/<volume>/``   files of a ConfigMap volume (kept up to date)
* ``volumes/secret/<volume>/``      files of a Secret volume (``defaultMode``, 0644 by default)
* ``volumes/empty-dir/<volume>/``   an emptyDir

Each directory is bind-mounted into the containers that mount the volume; hostPath
volumes are mounted directly. A file is rewritten (atomically, by rename) only when its
content changed, so containers see ConfigMap updates without a restart, as in Kubernetes;
a volume whose source did not change since edged last projected it is not touched at all
(a pod mounting many ConfigMaps costs one comparison per volume when one of them changes).
Deleting the pod removes the whole directory.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

from services.edged.spec import ConfigError, PodRef, Sources


def pod_dir(data_dir: str | Path, ref: PodRef) -> Path:
    return Path(data_dir) / "pods" / ref.dir_name


def log_dir(data_dir: str | Path, ref: PodRef) -> Path:
    return pod_dir(data_dir, ref) / "logs"


# target directory -> what was last projected there (data, items, mode); in memory only, so
# a restarted edged re-checks every file once.
_projected: dict[str, tuple[dict[str, bytes], list[Any] | None, int]] = {}


def remove_pod_dir(data_dir: str | Path, dir_name: str) -> None:
    p = Path(data_dir) / "pods" / dir_name
    prefix = f"{p}/"
    for k in [k for k in _projected if k.startswith(prefix)]:
        del _projected[k]
    if p.parent.name == "pods" and p.exists():
        shutil.rmtree(p, ignore_errors=True)


def pod_dirs(data_dir: str | Path) -> list[str]:
    root = Path(data_dir) / "pods"
    try:
        return sorted(d.name for d in root.iterdir() if d.is_dir())
    except OSError:
        return []


def _write(path: Path, data: bytes, mode: int) -> None:
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _project(target: Path, data: dict[str, bytes], items: list[Any] | None, mode: int, what: str) -> None:
    """Write ``data`` (or the selected ``items``) as files under ``target``; drop others."""
    key = str(target)
    last = _projected.get(key)
    if last is not None and last == (data, items or None, mode) and target.is_dir():
        return
    _projected.pop(key, None)
    target.mkdir(parents=True, exist_ok=True)
    files: dict[str, tuple[bytes, int]] = {}
    if items:
        for it in items:
            if not isinstance(it, dict):
                continue
            item_key, path = it.get("key"), it.get("path")
            if item_key not in data:
                raise ConfigError(f"{what}: key {item_key!r} not found")
            if not isinstance(path, str) or path.startswith("/") or ".." in path.split("/"):
                raise ConfigError(f"{what}: invalid item path {path!r}")
            m = it.get("mode")
            files[path] = (data[str(item_key)], int(m) if isinstance(m, int) else mode)
    else:
        files = {k: (v, mode) for k, v in data.items()}
    for rel, (content, m) in files.items():
        p = target / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        _write(p, content, m)
    wanted = {(target / rel) for rel in files}
    for p in sorted(target.rglob("*"), key=lambda x: len(str(x)), reverse=True):
        if p.is_file() and p not in wanted and not p.name.startswith("."):
            p.unlink(missing_ok=True)
    _projected[key] = (dict(data), copy.deepcopy(items) or None, mode)


def check_host_path(volume: str, path: str, protected: tuple[str, ...]) -> None:
    """A hostPath may neither lie in nor contain a protected directory (the node's data
    directory, where its credentials are): :class:`ConfigError` otherwise."""
    real = os.path.realpath(path)
    for d in protected:
        pd = os.path.realpath(d)
        if os.path.commonpath([real, pd]) in (real, pd):
            where = "lies inside" if os.path.commonpath([real, pd]) == pd else "contains"
            raise ConfigError(f"volume {volume}: hostPath {path} {where} the node's data directory {pd}, where its credentials are: refused on this node")


def prepare(
    data_dir: str | Path, pod: dict[str, Any], ref: PodRef, sources: Sources, *, protected: tuple[str, ...] = ()
) -> tuple[dict[str, str], set[str]]:
    """Create / refresh the pod's volumes; returns (volume name -> host path, read-only
    volumes). A missing ConfigMap or Secret raises :class:`ConfigError` (unless optional), so
    does a hostPath in or around one of the ``protected`` directories."""
    base = pod_dir(data_dir, ref) / "volumes"
    paths: dict[str, str] = {}
    read_only: set[str] = set()
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if not isinstance(v, dict) or not isinstance(v.get("name"), str):
            continue
        name = v["name"]
        if isinstance(v.get("configMap"), dict):
            src = v["configMap"]
            target = base / "configmap" / name
            data = sources.configmap_bytes(str(src.get("name")))
            if data is None:
                if not src.get("optional"):
                    raise ConfigError(f'configmap "{src.get("name")}" not found')
                data = {}
            mode = src.get("defaultMode")
            _project(target, data, src.get("items"), int(mode) if isinstance(mode, int) else 0o644, f'configmap "{src.get("name")}"')
            read_only.add(name)
        elif isinstance(v.get("secret"), dict):
            src = v["secret"]
            target = base / "secret" / name
            data = sources.secret_bytes(str(src.get("secretName")))
            if data is None:
                if not src.get("optional"):
                    raise ConfigError(f'secret "{src.get("secretName")}" not found')
                data = {}
            mode = src.get("defaultMode")
            _project(target, data, src.get("items"), int(mode) if isinstance(mode, int) else 0o644, f'secret "{src.get("secretName")}"')
            read_only.add(name)
        elif "emptyDir" in v:
            target = base / "empty-dir" / name
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, 0o777)
        elif isinstance(v.get("hostPath"), dict):
            hp = v["hostPath"]
            path = hp.get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ConfigError(f"volume {name}: hostPath.path must be absolute")
            check_host_path(name, path, protected)
            typ = hp.get("type") or ""
            target = Path(path)
            if typ == "DirectoryOrCreate":
                target.mkdir(parents=True, exist_ok=True)
            elif typ == "FileOrCreate":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch(exist_ok=True)
            elif typ == "Directory" and not target.is_dir():
                raise ConfigError(f"volume {name}: hostPath {path} is not a directory")
            elif typ == "File" and not target.is_file():
                raise ConfigError(f"volume {name}: hostPath {path} is not a file")
            elif typ == "" and not target.exists():
                target.mkdir(parents=True, exist_ok=True)
        else:
            continue  # unsupported volume types: a mount of one is a ConfigError
        paths[name] = str(target)
    return paths, read_only
