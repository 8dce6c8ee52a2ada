"""Generate the Python modules of edgebus's own ``.proto`` files with grpcio-tools.

- ``edgebus/dmi/v1beta1/api.proto``: KubeEdge's DMI (messages and gRPC stubs);
- ``edgebus/openapi/gnosticpb/openapiv2.proto``: gnostic's OpenAPI v2 document, which
  ``/openapi/v2`` is served as to kubectl (messages only).

Run by ``./dev setup`` and by a wheel build (``setup.py``); the modules are written next to
each proto and not committed. grpcio-tools < 1.82 generates code for protobuf 6, which the
rest of edgebus needs (``protobuf < 7``: the CRI stubs pin it).
``python -m edgebus.protogen [--check] [--force]``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Proto:
    path: Path
    grpc: bool  # also the gRPC service stubs (``*_pb2_grpc.py``)

    @property
    def outputs(self) -> tuple[Path, ...]:
        stem = self.path.with_suffix("")
        pb2 = stem.with_name(stem.name + "_pb2.py")
        return (pb2, stem.with_name(stem.name + "_pb2_grpc.py")) if self.grpc else (pb2,)

    def up_to_date(self) -> bool:
        return all(s.exists() and s.stat().st_mtime >= self.path.stat().st_mtime for s in self.outputs)


PROTOS = (
    Proto(ROOT / "edgebus" / "dmi" / "v1beta1" / "api.proto", grpc=True),
    Proto(ROOT / "edgebus" / "openapi" / "gnosticpb" / "openapiv2.proto", grpc=False),
)


def up_to_date() -> bool:
    return all(p.up_to_date() for p in PROTOS)


def generate(force: bool = False) -> list[Path]:
    """Write the modules of every proto that changed since; the protos written."""
    stale = [p for p in PROTOS if force or not p.up_to_date()]
    if not stale:
        return []
    import grpc_tools  # a setup-time dependency
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    for p in stale:
        rel = p.path.relative_to(ROOT)
        args = ["grpc_tools.protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={ROOT}", f"--pyi_out={ROOT}"]
        if p.grpc:
            args.append(f"--grpc_python_out={ROOT}")
        rc = protoc.main([*args, str(rel)])
        if rc != 0:
            raise SystemExit(f"protoc failed ({rc}) on {rel}")
    return [p.path for p in stale]


def main() -> None:
    if "--check" in sys.argv:
        sys.exit(0 if up_to_date() else 1)
    wrote = generate(force="--force" in sys.argv)
    print("generated from " + ", ".join(str(p.relative_to(ROOT)) for p in wrote) if wrote else "protobuf modules up to date")


if __name__ == "__main__":
    main()
