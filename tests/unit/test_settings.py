"""edgebus.runtime.settings: defaults < YAML (EDGEBUS_CONFIG) < environment, and to_env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from edgebus.runtime.settings import LogSettings, NatsSettings, OpsSettings, ServiceSettings, to_env


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EDGEBUS_* variable of the calling shell may leak into these tests."""
    for k in list(os.environ):
        if k.upper().startswith("EDGEBUS_"):
            monkeypatch.delenv(k)


def write_yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edgebus.yaml"
    p.write_text(text)
    return p


class MetaSettings(BaseModel):
    data_dir: str = "/var/lib/edgebus/meta"
    sync: bool = True
    map_size_mib: int = 64


class Limits(BaseModel):
    max_objects: int = 1000
    ratio: float = 0.5


class CacheSettings(BaseModel):
    enabled: bool = False
    limits: Limits = Limits()


class MetaManagerSettings(ServiceSettings):
    """A service extending the base with its own groups, as services do."""

    metamanager: MetaSettings = MetaSettings()
    cache: CacheSettings = CacheSettings()


def test_defaults() -> None:
    s = ServiceSettings()
    assert s.node is None
    assert s.cloud_domain == "cloud"
    assert s.nats == NatsSettings()
    assert s.nats.url == "nats://127.0.0.1:4222"
    assert s.nats.servers() == ["nats://127.0.0.1:4222"]
    assert s.nats.token is None
    assert s.ops == OpsSettings(host="127.0.0.1", port=0)
    assert s.log == LogSettings(level="INFO", file=None)
    assert s.drain_timeout == 10.0


def test_servers_splits_commas() -> None:
    assert NatsSettings(url=" nats://a:1 , nats://b:2,, ").servers() == ["nats://a:1", "nats://b:2"]


def test_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(
        tmp_path,
        """
node: edge-1.site
nats:
  url: nats://yaml:4222
  ping_interval: 2.5
ops:
  port: 9100
log:
  level: DEBUG
drain_timeout: 3
""",
    )
    monkeypatch.setenv("EDGEBUS_CONFIG", str(path))
    s = ServiceSettings()
    assert s.node == "edge-1.site"
    assert s.nats.url == "nats://yaml:4222"
    assert s.nats.ping_interval == 2.5
    assert s.nats.request_timeout == 5.0  # untouched fields of a group keep defaults
    assert s.ops.port == 9100 and s.ops.host == "127.0.0.1"
    assert s.log.level == "DEBUG"
    assert s.drain_timeout == 3.0


def test_env_overrides_yaml_field_by_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "node: from-yaml\nnats:\n  url: nats://yaml:4222\n  ping_interval: 2.5\n")
    monkeypatch.setenv("EDGEBUS_CONFIG", str(path))
    monkeypatch.setenv("EDGEBUS_NATS__URL", "nats://env:4222")
    monkeypatch.setenv("EDGEBUS_NODE", "from-env")
    s = ServiceSettings()
    assert s.nats.url == "nats://env:4222"
    assert s.nats.ping_interval == 2.5  # the rest of the YAML group survives (deep merge)
    assert s.node == "from-env"


def test_env_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBUS_NATS__URL", "nats://a:1,nats://b:2")
    monkeypatch.setenv("EDGEBUS_OPS__PORT", "8080")
    monkeypatch.setenv("edgebus_log__level", "WARNING")  # case-insensitive
    monkeypatch.setenv("EDGEBUS_DRAIN_TIMEOUT", "1.5")
    s = ServiceSettings()
    assert s.nats.servers() == ["nats://a:1", "nats://b:2"]
    assert s.ops.port == 8080
    assert s.log.level == "WARNING"
    assert s.drain_timeout == 1.5


def test_init_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBUS_NODE", "from-env")
    assert ServiceSettings(node="explicit").node == "explicit"


def test_unknown_yaml_keys_are_errors_naming_the_nearest_valid_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBUS_CONFIG", str(write_yaml(tmp_path, "nodename: n\n")))
    with pytest.raises(ValueError, match=r"unknown setting 'nodename'; did you mean node\?"):
        ServiceSettings()
    monkeypatch.setenv("EDGEBUS_CONFIG", str(write_yaml(tmp_path, "metamanager:\n  data_dri: /x\ncache:\n  limits:\n    max_object: 3\n")))
    with pytest.raises(ValueError) as err:
        MetaManagerSettings()
    assert "unknown setting 'metamanager.data_dri'; did you mean metamanager.data_dir?" in str(err.value)
    assert "unknown setting 'cache.limits.max_object'; did you mean cache.limits.max_objects?" in str(err.value)


def test_unknown_env_settings_are_errors_naming_the_nearest_valid_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBUS_NATS__PING_INTERVALL", "2")
    with pytest.raises(ValueError, match="unknown setting EDGEBUS_NATS__PING_INTERVALL; did you mean EDGEBUS_NATS__PING_INTERVAL"):
        ServiceSettings()
    monkeypatch.delenv("EDGEBUS_NATS__PING_INTERVALL")
    monkeypatch.setenv("EDGEBUS_DRAIN_TIMOUT", "1")
    with pytest.raises(ValueError, match="EDGEBUS_DRAIN_TIMOUT; did you mean EDGEBUS_DRAIN_TIMEOUT"):
        ServiceSettings()
    monkeypatch.delenv("EDGEBUS_DRAIN_TIMOUT")
    # a group of another service is unknown to this one
    monkeypatch.setenv("EDGEBUS_METAMANAGER__DATA_DIR", "/x")
    with pytest.raises(ValueError, match="EDGEBUS_METAMANAGER__DATA_DIR"):
        ServiceSettings()
    assert MetaManagerSettings().metamanager.data_dir == "/x"


def test_errors_do_not_echo_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBUS_NATS__TOKEN", "s3cret-token")
    monkeypatch.setenv("EDGEBUS_NATS__TOKN", "x")
    with pytest.raises(ValueError) as err:
        ServiceSettings()
    assert "s3cret-token" not in str(err.value)


def test_variables_that_are_not_settings_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EDGEBUS_LAB_DIR", "EDGEBUS_NATS_SERVER", "EDGEBUS_VENV", "EDGEBUS_CONFIG", "EDGEBUS_IMAGE_CACHE", "EDGEBUS_SERVER", "EDGEBUS_CLOUD_NATS"):
        monkeypatch.setenv(name, "/dev/null" if name == "EDGEBUS_CONFIG" else "x")
    assert ServiceSettings().node is None


class Labelled(ServiceSettings):
    labels: dict[str, str] = {}


def test_free_form_maps_take_any_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBUS_LABELS__SITE", "north")
    assert Labelled().labels == {"site": "north"}


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEBUS_OPS__PORT", "not-a-port")
    with pytest.raises(ValueError, match="port"):
        ServiceSettings()


def test_service_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "metamanager:\n  data_dir: /yaml\n  map_size_mib: 8\ncache:\n  limits:\n    ratio: 0.9\n")
    monkeypatch.setenv("EDGEBUS_CONFIG", str(path))
    monkeypatch.setenv("EDGEBUS_METAMANAGER__DATA_DIR", "/env")
    monkeypatch.setenv("EDGEBUS_METAMANAGER__SYNC", "false")
    monkeypatch.setenv("EDGEBUS_CACHE__LIMITS__MAX_OBJECTS", "7")
    s = MetaManagerSettings()
    assert s.metamanager == MetaSettings(data_dir="/env", sync=False, map_size_mib=8)
    assert s.cache.limits == Limits(max_objects=7, ratio=0.9)
    assert s.cache.enabled is False
    assert s.nats.url == "nats://127.0.0.1:4222"


# ---------------------------------------------------------------------------------------
# to_env
# ---------------------------------------------------------------------------------------


def test_to_env_flattens() -> None:
    env = to_env(
        {"node": "e1", "nats": {"url": "nats://x:1", "token": None}, "ops": {"port": 9}, "flag": True, "off": False}
    )
    assert env == {
        "EDGEBUS_NODE": "e1",
        "EDGEBUS_NATS__URL": "nats://x:1",
        "EDGEBUS_OPS__PORT": "9",
        "EDGEBUS_FLAG": "true",
        "EDGEBUS_OFF": "false",
    }
    assert to_env({"a": {"b": {"c": 1}}}, prefix="X_") == {"X_A__B__C": "1"}


def _roundtrip(monkeypatch: pytest.MonkeyPatch, cls: type[ServiceSettings], original: ServiceSettings) -> ServiceSettings:
    env = to_env(original.model_dump())
    assert all(k.startswith("EDGEBUS_") and isinstance(v, str) for k, v in env.items())
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return cls()


def test_to_env_roundtrip_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    original = ServiceSettings()
    assert _roundtrip(monkeypatch, ServiceSettings, original) == original


def test_to_env_roundtrip_custom(monkeypatch: pytest.MonkeyPatch) -> None:
    original = MetaManagerSettings(
        node="edge-7.site",
        cloud_domain="hub",
        nats=NatsSettings(url="nats://a:1,nats://b:2", ping_interval=0.5, request_timeout=1.25, token="s3cr=t,x"),
        ops=OpsSettings(host="0.0.0.0", port=9100),
        log=LogSettings(level="DEBUG", file="/tmp/edgebus log.txt"),
        drain_timeout=0.1,
        metamanager=MetaSettings(data_dir="/data/meta", sync=False, map_size_mib=1024),
        cache=CacheSettings(enabled=True, limits=Limits(max_objects=3, ratio=0.125)),
    )
    back = _roundtrip(monkeypatch, MetaManagerSettings, original)
    assert back == original
    assert back.model_dump() == original.model_dump()


def test_to_env_roundtrip_beats_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A parent passing its settings to a child through the environment wins over the child's file."""
    monkeypatch.setenv("EDGEBUS_CONFIG", str(write_yaml(tmp_path, "node: yaml-node\nops:\n  port: 1\n")))
    original = ServiceSettings(node="parent-node", ops=OpsSettings(port=2))
    back = _roundtrip(monkeypatch, ServiceSettings, original)
    assert back.node == "parent-node" and back.ops.port == 2


_env_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)


@settings(max_examples=100)
@given(
    node=st.one_of(st.none(), _env_text),
    token=st.one_of(st.none(), _env_text),
    level=_env_text,
    port=st.integers(min_value=0, max_value=65535),
    ping=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    sync=st.booleans(),
)
def test_to_env_roundtrip_property(
    node: str | None, token: str | None, level: str, port: int, ping: float, sync: bool
) -> None:
    original = MetaManagerSettings(
        node=node,
        nats=NatsSettings(token=token, ping_interval=ping),
        ops=OpsSettings(port=port),
        log=LogSettings(level=level),
        metamanager=MetaSettings(sync=sync),
    )
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.upper().startswith("EDGEBUS_"):
                mp.delenv(k)
        for k, v in to_env(original.model_dump()).items():
            mp.setenv(k, v)
        assert MetaManagerSettings() == original


def test_every_lab_process_accepts_the_settings_the_lab_gives_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab passes settings through the environment: each service knows every one."""
    import importlib

    from edgebus.lab import LabPlan

    plan = LabPlan(data_dir=str(tmp_path), nodes=["edge-1", "edge-2"], containerd=False, replicas={"edgecontroller": 2})
    checked = 0
    for spec in plan.processes():
        if "-m" not in spec.argv or not spec.argv[-1].startswith("services."):
            continue
        config = importlib.import_module(f"{spec.argv[-1]}.config")
        with pytest.MonkeyPatch.context() as mp:
            for k, v in spec.env.items():
                mp.setenv(k, v)
            config.Settings()
        checked += 1
    assert checked >= 12


def test_the_all_in_one_process_and_each_service_inside_accept_their_settings(tmp_path: Path) -> None:
    import importlib

    from edgebus.allinone.settings import Settings as AllInOne, member_prefix
    from edgebus.lab import LabPlan

    plan = LabPlan(data_dir=str(tmp_path), nodes=["edge-1"], containerd=False, all_in_one=True)
    [spec] = [p for p in plan.processes() if p.argv[-1] == "edgebus.allinone"]
    with pytest.MonkeyPatch.context() as mp:
        for k, v in spec.env.items():
            mp.setenv(k, v)
        aio = AllInOne()
        members = [*aio.allinone.services, *aio.allinone.on_demand]
        assert "edgehub" in members and "mappers.modbus" in members
        for name in members:
            config = importlib.import_module(f"services.{name}.config")
            s = config.Settings(_env_prefix=member_prefix(name))
            assert s.node == "edge-1"
        mp.setenv(member_prefix("edgehub") + "NO_SUCH_KEY", "1")
        with pytest.raises(Exception, match="NO_SUCH_KEY"):
            importlib.import_module("services.edgehub.config").Settings(_env_prefix=member_prefix("edgehub"))
