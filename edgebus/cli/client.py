"""Where the CLI finds the lab (or the cluster) and how it talks to the apiserver."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from edgebus.lab import DEFAULT_DIR, load_state


def lab_dir(data_dir: str | None = None) -> Path:
    return Path(data_dir or os.environ.get("EDGEBUS_LAB_DIR") or DEFAULT_DIR)


def server_url(server: str | None, data_dir: str | None = None) -> str:
    if server:
        return server.rstrip("/")
    if os.environ.get("EDGEBUS_SERVER"):
        return os.environ["EDGEBUS_SERVER"].rstrip("/")
    st = load_state(lab_dir(data_dir))
    if st:
        return str(st["apiserver"])
    return "http://127.0.0.1:14202"


def nats_url(nats: str | None, data_dir: str | None = None) -> str:
    if nats:
        return nats
    if os.environ.get("EDGEBUS_CLOUD_NATS"):
        return os.environ["EDGEBUS_CLOUD_NATS"]
    st = load_state(lab_dir(data_dir))
    if st:
        return str(st["cloud_nats"])
    return "nats://127.0.0.1:14200"


class ApiError(Exception):
    def __init__(self, code: int, body: Any) -> None:
        self.code = code
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{msg} ({code})" if msg else f"HTTP {code}")


class Api:
    def __init__(self, base: str, timeout: float = 10.0) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=timeout)

    def request(self, method: str, path: str, *, json_body: Any = None, params: dict[str, str] | None = None) -> Any:
        try:
            r = self.http.request(method, path, json=json_body, params=params)
        except httpx.ConnectError:
            raise ApiError(0, {"message": f"cannot reach the edgebus apiserver at {self.base} (is the lab up? `edgebus up`)"}) from None
        try:
            body = r.json()
        except ValueError:
            body = {"message": r.text}
        if r.status_code >= 400:
            raise ApiError(r.status_code, body)
        return body
