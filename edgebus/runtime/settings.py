"""Typed settings: defaults < YAML file (``EDGEBUS_CONFIG``) < environment (``EDGEBUS_*``).

Nested groups use ``__`` in environment variables, e.g. ``EDGEBUS_NATS__URL``,
``EDGEBUS_OPS__PORT``, ``EDGEBUS_METAMANAGER__DATA_DIR``. Each service extends
:class:`ServiceSettings` with a group of its own.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from edgebus.bus import BusAuth


class NatsSettings(BaseModel):
    """The NATS server this process talks to (for edge services: the node's leaf server)."""

    url: str = Field("nats://127.0.0.1:4222", description="Server URL(s), comma-separated.")
    ping_interval: float = Field(5.0, description="Client ping interval, seconds.")
    request_timeout: float = Field(5.0, description="Default request / JetStream API timeout, seconds.")
    token: str | None = Field(None, description="Auth token, when the server requires one.")
    creds_file: str | None = Field(None, description="NATS credentials (.creds: user JWT and nkey seed).")
    nkey_file: str | None = Field(None, description="A file holding this process's nkey seed (a node's local services).")
    user: str | None = Field(None, description="User name, where the server is configured with passwords.")
    password: str | None = Field(None, description="Password of ``user``.")
    ca_file: str | None = Field(None, description="Verify the server's TLS certificate against this CA bundle (TLS required).")
    cert_file: str | None = Field(None, description="TLS client certificate to present.")
    key_file: str | None = Field(None, description="Key of the TLS client certificate.")
    inbox_prefix: str | None = Field(None, description="Inbox prefix for replies (default: the node's, for edge services).")

    def servers(self) -> list[str]:
        return [s.strip() for s in self.url.split(",") if s.strip()]

    def auth(self) -> BusAuth:
        return BusAuth(
            creds_file=self.creds_file,
            nkey_file=self.nkey_file,
            token=self.token,
            user=self.user,
            password=self.password,
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            inbox_prefix=self.inbox_prefix,
        )


class OpsSettings(BaseModel):
    """The operations HTTP endpoint: /healthz, /readyz, /metrics."""

    host: str = "127.0.0.1"
    port: int = Field(0, description="0 disables the endpoint.")


class LogSettings(BaseModel):
    level: str = "INFO"
    file: str | None = Field(None, description="Log to this file instead of stderr.")


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEBUS_", env_nested_delimiter="__", extra="ignore")

    node: str | None = Field(None, description="Edge services: the name of this node.")
    cloud_domain: str = Field("cloud", description="JetStream domain of the cloud.")
    nats: NatsSettings = NatsSettings()
    ops: OpsSettings = OpsSettings()
    log: LogSettings = LogSettings()
    drain_timeout: float = Field(10.0, description="Seconds to finish in-flight work on SIGTERM.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("EDGEBUS_CONFIG")
        if path:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)


def to_env(settings: dict[str, Any], prefix: str = "EDGEBUS_") -> dict[str, str]:
    """Flatten a nested settings dict into ``EDGEBUS_*`` environment variables."""
    out: dict[str, str] = {}
    for k, v in settings.items():
        key = f"{prefix}{k.upper()}"
        if isinstance(v, dict):
            out.update(to_env(v, key + "__"))
        elif v is None:
            continue
        elif isinstance(v, bool):
            out[key] = "true" if v else "false"
        else:
            out[key] = str(v)
    return out
