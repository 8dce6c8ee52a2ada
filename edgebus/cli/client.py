"""Where the CLI finds the lab (or the cluster) and how it talks to the apiserver."""

from __future__ import annotations

import os
import ssl
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


def api_credentials(data_dir: str | None = None) -> tuple[str | None, str | None]:
    """(bearer token, CA file) for the apiserver: ``EDGEBUS_TOKEN`` / ``EDGEBUS_CA_FILE``, or
    the files the running lab names in ``lab.json`` (``api_token_file``, ``api_ca_file``)."""
    token, ca = os.environ.get("EDGEBUS_TOKEN") or None, os.environ.get("EDGEBUS_CA_FILE") or None
    st = load_state(lab_dir(data_dir)) or {}
    if token is None and st.get("api_token_file"):
        try:
            token = Path(st["api_token_file"]).read_text().strip() or None
        except OSError:
            token = None
    return token, ca or st.get("api_ca_file") or None


class Api:
    def __init__(self, base: str, timeout: float = 10.0, *, data_dir: str | None = None) -> None:
        self.base = base
        token, ca = api_credentials(data_dir)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base, timeout=timeout, headers=headers, verify=ssl.create_default_context(cafile=ca) if ca else True)

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
