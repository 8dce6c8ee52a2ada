"""Running the protocol-only DMI mapper (``tests/integration/dmi_mapper.py``) from a test:
its stubs generated from the interface definition into a directory of its own, the mapper
as a process of its own, its state read from the JSON file it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROTO = HERE.parent / "edgebus" / "dmi" / "v1beta1" / "api.proto"
MAPPER = HERE / "integration" / "dmi_mapper.py"
PROTOCOL = "virtual-thermostat"


def generate_stubs(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", "api.proto"], check=True, timeout=60
    )


class RunningMapper:
    def __init__(self, tmp: Path, edge_socket: Path | str, *, probe: bool = False) -> None:
        self.state = tmp / "mapper-state.json"
        stubs = tmp / "mapper-stubs"
        generate_stubs(stubs)
        self.proc = subprocess.Popen(
            [sys.executable, str(MAPPER), "--stubs", str(stubs), "--edge", str(edge_socket), "--sock", str(tmp / "mapper.sock"), "--protocol", PROTOCOL, "--state", str(self.state), *(["--probe"] if probe else [])],
        )

    def read(self) -> dict[str, Any]:
        try:
            return json.loads(self.state.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


