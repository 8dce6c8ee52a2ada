"""edgebus as an operator installs it: the wheel built from this source tree, installed with
pip into a virtualenv of its own (kept between runs under the cache dir, so only the wheel
is reinstalled; its dependencies come from the package index once)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGEBUS_CACHE_DIR", str(Path.home() / ".cache" / "edgebus")))
#: what the wheel is built from (pyproject: packages edgebus* and services*)
SOURCES = ("pyproject.toml", "setup.py", "README.md", "constraints.txt", "edgebus", "services")


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of a copy of the sources (the tree itself gets no build/ dir)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgebus-src-") as tmp:
        for name in SOURCES:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, Path(tmp, name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
            else:
                shutil.copy2(src, Path(tmp, name))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), tmp], check=True, capture_output=True, text=True, timeout=300)
    [wheel] = sorted(out.glob("edgebus-*.whl"))
    return wheel


def installed_venv(wheel: Path, *, name: str = "install-venv") -> Path:
    """A venv with ``wheel`` installed (pinned by constraints.txt); returns its bin dir."""
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    venv = CACHE / name
    key = hashlib.sha256((ROOT / "constraints.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes() + base.encode()).hexdigest()
    stamp = venv / ".deps"
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not stamp.exists() or stamp.read_text() != key:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        r = subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise RuntimeError(f"pip install {wheel.name} failed: {r.stderr[-2000:]}")
        stamp.write_text(key)
    r = subprocess.run([*pip, "--force-reinstall", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"pip install {wheel.name} failed: {r.stderr[-2000:]}")
    return venv / "bin"
