"""Wheel builds generate the protobuf modules (the DMI stubs ``edgebus/dmi/v1beta1/api_pb2*.py``
and gnostic's ``edgebus/openapi/gnosticpb/openapiv2_pb2.py``) from their protos before the
Python files are collected; everything else is declared in pyproject.toml."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithStubs(build_py):
    def run(self) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from edgebus.protogen import generate

        generate()
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
