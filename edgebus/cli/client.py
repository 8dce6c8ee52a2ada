"""Where the CLI finds the lab (or the cluster) and how it talks to the apiserver."""

from __future__ import annotations

import os
import ssl
import sys
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


def _state_path(key: str, data_dir: str | None) -> str | None:
    """A file ``lab.json`` names (a relative path is relative to its dir: the files a
    compose lab writes for the host, see edgebus.deploy.boot)."""
    st = load_state(lab_dir(data_dir))
    v = (st or {}).get(key)
    if not v:
        return None
    path = Path(str(v))
    return str(path if path.is_absolute() else lab_dir(data_dir) / path)


def ca_file(data_dir: str | None = None) -> str | None:
    """The CA bundle the cloud's certificates chain to (``EDGEBUS_CA_FILE``, or the lab's)."""
    return os.environ.get("EDGEBUS_CA_FILE") or _state_path("ca_file", data_dir) or _state_path("api_ca_file", data_dir)


def nats_creds(data_dir: str | None = None) -> str | None:
    """NATS credentials of an admin (``EDGEBUS_NATS_CREDS``, or the lab's)."""
    return os.environ.get("EDGEBUS_NATS_CREDS") or _state_path("admin_creds", data_dir)


def api_token(data_dir: str | None = None) -> str | None:
    """The bearer token for the API (``EDGEBUS_TOKEN``, or the lab's admin token)."""
    if os.environ.get("EDGEBUS_TOKEN"):
        return os.environ["EDGEBUS_TOKEN"]
    f = _state_path("api_token_file", data_dir)
    try:
        return Path(f).read_text().strip() or None if f else None
    except OSError:
        return None


def cloud_bus(nats: str | None, data_dir: str | None, *, name: str = "edgebus-cli", request_timeout: float = 5.0, node: str | None = None) -> Any:
    """A connection to the cloud's NATS server as an admin. With ``node``, its replies arrive
    where that node may send them (for JetStream requests into the node's domain)."""
    from edgebus import names
    from edgebus.bus import Bus, BusAuth

    auth = BusAuth(creds_file=nats_creds(data_dir), ca_file=ca_file(data_dir), inbox_prefix=names.reply_prefix(node) if node else None)
    return Bus(nats_url(nats, data_dir).split(","), name=name, request_timeout=request_timeout, auth=auth)  # a cluster: every server


def api_client(server: str | None, data_dir: str | None, timeout: float = 10.0) -> Api:
    return Api(server_url(server, data_dir), timeout=timeout, ca_file=ca_file(data_dir), token=api_token(data_dir))


class ApiError(Exception):
    def __init__(self, code: int, body: Any) -> None:
        self.code = code
        self.body = body
        msg = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{msg} ({code})" if msg else f"HTTP {code}")


def api_credentials(data_dir: str | None = None) -> tuple[str | None, str | None]:
    """(bearer token, CA file) for the apiserver: ``EDGEBUS_TOKEN`` / ``EDGEBUS_CA_FILE``, or
    the files the running lab names in ``lab.json`` (``api_token_file``, ``ca_file``)."""
    return api_token(data_dir), ca_file(data_dir)


class Api:
    def __init__(self, base: str, timeout: float = 10.0, *, ca_file: str | None = None, token: str | None = None) -> None:
        self.base = base
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self.http = httpx.Client(base_url=base, timeout=timeout, verify=verify, headers=headers)

    def request(self, method: str, path: str, *, json_body: Any = None, params: dict[str, str] | None = None) -> Any:
        try:
            r = self.http.request(method, path, json=json_body, params=params)
        except httpx.ConnectError:
            raise ApiError(0, {"message": f"cannot reach the edgebus apiserver at {self.base} (is the lab up? `edgebus up`)"}) from None
        except httpx.TimeoutException:
            raise ApiError(0, {"message": f"the edgebus apiserver at {self.base} did not answer in time"}) from None
        except httpx.HTTPError as exc:
            raise ApiError(0, {"message": f"talking to the edgebus apiserver at {self.base} failed: {exc}"}) from None
        try:
            body = r.json()
        except ValueError:
            body = {"message": r.text}
        if r.status_code >= 400:
            raise ApiError(r.status_code, body)
        for w in r.headers.get_list("warning"):  # as kubectl prints them: "Warning: <text>"
            text = w.split('"', 1)[1].rsplit('"', 1)[0].replace('\\"', '"') if w.count('"') >= 2 else w
            print(f"Warning: {text}", file=sys.stderr)
        return body
