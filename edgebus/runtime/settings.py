"""Typed settings: defaults < YAML file (``EDGEBUS_CONFIG``) < environment (``EDGEBUS_*``).

Nested groups use ``__`` in environment variables, e.g. ``EDGEBUS_NATS__URL``,
``EDGEBUS_OPS__PORT``, ``EDGEBUS_METAMANAGER__DATA_DIR``. Each service extends
:class:`ServiceSettings` with a group of its own.

An unknown key - in the YAML file, in the arguments, or an ``EDGEBUS_*`` variable that is
not a setting of this service - is an error that names it and the nearest valid one (a typo
is never silently ignored). The few ``EDGEBUS_*`` variables that are not settings (they
configure tools, not services) are listed in :data:`NOT_SETTINGS`.
"""

from __future__ import annotations

import contextvars
import difflib
import os
import types
import typing
from typing import Any

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from edgebus.bus import BusAuth
ENV_PREFIX = "EDGEBUS_"
#: ``EDGEBUS_*`` environment variables that are not service settings
NOT_SETTINGS = frozenset(
    {
        "EDGEBUS_CONFIG",  # the YAML settings file itself
        "EDGEBUS_LAB_DIR",  # the lab's data dir (edgebus CLI)
        "EDGEBUS_VENV",  # ./dev: the virtualenv
        "EDGEBUS_NATS_SERVER",  # the nats-server binary
        "EDGEBUS_IMAGE_CACHE",  # offline OCI image archives
        "EDGEBUS_CONTAINERD",  # the containerd binary
        "EDGEBUS_CTR",  # the ctr binary
        "EDGEBUS_SERVER",  # edgebus CLI: the apiserver URL
        "EDGEBUS_CLOUD_NATS",  # edgebus CLI: the cloud's NATS URL
        "EDGEBUS_TOKEN",  # docker-compose: the lab's bootstrap token
    }
)


#: the all-in-one process's per-service settings (``EDGEBUS_SVC_<SERVICE>__...``, see
#: :mod:`edgebus.allinone.settings`): each service inside reads its own
MEMBER_PREFIX = "EDGEBUS_SVC_"


def is_setting_variable(name: str) -> bool:
    """An ``EDGEBUS_*`` environment variable meant as a service setting of this process."""
    up = name.upper()
    return up.startswith(ENV_PREFIX) and up not in NOT_SETTINGS and not up.startswith(MEMBER_PREFIX)


#: the environment prefix of the settings being read (see ``ServiceSettings.__init__``)
_READING_PREFIX: contextvars.ContextVar[str] = contextvars.ContextVar("edgebus_settings_prefix", default=ENV_PREFIX)


class UnknownSetting(ValueError):
    """A settings key no field of the service has."""


def _group(annotation: Any) -> type[BaseModel] | None:
    """The settings group (a pydantic model) a field holds, if it holds one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if len(models) == 1 else None
    return None


def _paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, f in model.model_fields.items():
        out.append((*prefix, name))
        sub = _group(f.annotation)
        if sub is not None:
            out += _paths(sub, (*prefix, name))
    return out


def _unknown(model: type[BaseModel], data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Keys of ``data`` (recursively, into settings groups) that ``model`` has no field for."""
    out: list[tuple[str, ...]] = []
    fields = {n.lower(): f for n, f in model.model_fields.items()}
    for key, value in data.items():
        f = fields.get(str(key).lower())
        if f is None:
            out.append((*prefix, str(key)))
            continue
        sub = _group(f.annotation)
        if sub is not None and isinstance(value, dict):
            out += _unknown(sub, value, (*prefix, str(key)))
    return out


def _env_name(path: tuple[str, ...], prefix: str = ENV_PREFIX) -> str:
    return prefix + "__".join(path).upper()


def _suggest(bad: str, candidates: list[str]) -> str:
    near = difflib.get_close_matches(bad, candidates, n=1, cutoff=0.6)
    if near:
        return f"; did you mean {near[0]}?"
    return f"; valid: {', '.join(sorted(candidates))}" if len(candidates) <= 12 else ""


def check_settings_keys(model: type[BaseModel], data: dict[str, Any], environ: typing.Mapping[str, str], prefix: str = ENV_PREFIX) -> None:
    """Raise :class:`UnknownSetting` naming every unknown key (an ``EDGEBUS_*`` variable - or
    one under ``prefix``, for a service inside the all-in-one process - or a key of the YAML
    file / arguments) and the nearest valid one."""
    paths = _paths(model)
    problems: list[str] = []
    seen: set[tuple[str, ...]] = set()
    env_names = [_env_name(p, prefix) for p in paths]
    for name in sorted(environ):
        if prefix == ENV_PREFIX and not is_setting_variable(name):
            continue
        if not name.upper().startswith(prefix.upper()):
            continue
        path = tuple(name[len(prefix) :].lower().split("__"))
        if path in set(paths) or _inside_free_field(model, path):
            continue
        seen.add(path)
        problems.append(f"unknown setting {name.upper()}{_suggest(name.upper(), env_names)}")
    dotted = [".".join(p) for p in paths]
    for path in _unknown(model, data):
        if tuple(p.lower() for p in path) in seen:
            continue
        key = ".".join(path)
        problems.append(f"unknown setting {key!r}{_suggest(key, dotted)}")
    if problems:
        raise UnknownSetting("; ".join(problems))


def _inside_free_field(model: type[BaseModel], path: tuple[str, ...]) -> bool:
    """``path`` goes into a field that is not a settings group (e.g. a dict of labels)."""
    cur: type[BaseModel] | None = model
    for i, part in enumerate(path):
        if cur is None:
            return False
        f = {n.lower(): f for n, f in cur.model_fields.items()}.get(part)
        if f is None:
            return False
        sub = _group(f.annotation)
        if sub is None:
            return i < len(path) - 1  # deeper than a plain field: its own keys (a dict)
        cur = sub
    return False


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
    replicas: int = Field(1, ge=1, le=5, description="JetStream replicas of the streams and KV buckets this process creates in its server's domain (3 on a NATS cluster).")

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


class EventSettings(BaseModel):
    """Kubernetes Events this process writes (cloud services)."""

    ttl: float = Field(3600.0, description="Seconds an Event lives after its last update (as kube-apiserver's --event-ttl).")


class ServiceSettings(BaseSettings):
    # unknown keys are reported by ``_no_unknown_keys`` (with the nearest valid one); errors
    # never echo the input (it may hold credentials)
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", hide_input_in_errors=True)

    node: str | None = Field(None, description="Edge services: the name of this node.")
    cloud_domain: str = Field("cloud", description="JetStream domain of the cloud.")
    service_cidr: str = Field(
        "10.96.0.0/12", description="Cloud: the range Services' cluster IPs are allocated from (the apiserver and cloudhub, which stores edges' writes, must agree)."
    )
    nats: NatsSettings = NatsSettings()
    ops: OpsSettings = OpsSettings()
    log: LogSettings = LogSettings()
    events: EventSettings = EventSettings()
    drain_timeout: float = Field(10.0, description="Seconds to finish in-flight work on SIGTERM.")

    def __init__(self, **values: Any) -> None:
        # the environment prefix these settings are read under (``_env_prefix``: a service
        # inside the all-in-one process), for the check of unknown keys
        token = _READING_PREFIX.set(str(values.get("_env_prefix") or ENV_PREFIX))
        try:
            super().__init__(**values)
        finally:
            _READING_PREFIX.reset(token)

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            check_settings_keys(cls, data, os.environ, _READING_PREFIX.get())
        return data

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
