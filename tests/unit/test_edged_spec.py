"""edged's pure pod-spec logic: quantities, environment, mounts, CRI configs, volumes."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path

import pytest

from edgebus.cri import api
from services.edged import spec as S
from services.edged import volumes


def pod(**container: object) -> dict:
    c = {"name": "app", "image": "busybox:1.36", **container}
    return {"metadata": {"name": "p", "namespace": "ns1", "uid": "1234-abcd", "labels": {"app": "x"}}, "spec": {"nodeName": "edge-1", "containers": [c]}}


def sources() -> S.Sources:
    return S.Sources(
        configmaps={"cm": {"data": {"greeting": "hi", "file.txt": "content"}, "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()}}},
        secrets={"sec": {"data": {"password": base64.b64encode(b"hunter2").decode()}}},
    )


@pytest.mark.parametrize(
    ("q", "want"),
    [("500m", Decimal("0.5")), ("2", Decimal(2)), ("64Mi", Decimal(64 << 20)), ("1G", Decimal(10**9)), ("1e3", Decimal(1000)), (3, Decimal(3)), ("1.5Gi", Decimal(3 << 29))],
)
def test_quantities(q: object, want: Decimal) -> None:
    assert S.parse_quantity(q) == want


@pytest.mark.parametrize("bad", ["lots", "", "1XB", True, None, "--1"])
def test_bad_quantities(bad: object) -> None:
    with pytest.raises(ValueError):
        S.parse_quantity(bad)


def test_resources_as_the_kubelet_maps_them() -> None:
    r = S.linux_resources({"resources": {"limits": {"cpu": "250m", "memory": "128Mi"}, "requests": {"cpu": "100m"}}})
    assert (r.cpu_period, r.cpu_quota, r.memory_limit_in_bytes, r.cpu_shares) == (100_000, 25_000, 128 << 20, 102)
    none = S.linux_resources({})
    assert none.cpu_quota == 0 and none.memory_limit_in_bytes == 0 and none.cpu_shares == 2
    with pytest.raises(S.ConfigError, match="invalid quantity"):
        S.linux_resources({"resources": {"limits": {"memory": "lots"}}})


@pytest.mark.parametrize(
    ("image", "policy", "want"),
    [("busybox", None, "Always"), ("busybox:latest", None, "Always"), ("reg:5000/busybox", None, "Always"), ("busybox:1.36", None, "IfNotPresent"), ("b@sha256:00", None, "IfNotPresent"), ("busybox", "Never", "Never")],
)
def test_pull_policy_defaults(image: str, policy: str | None, want: str) -> None:
    c = {"image": image}
    if policy:
        c["imagePullPolicy"] = policy
    assert S.pull_policy(c) == want


def test_env_from_configmap_secret_field_and_expansion() -> None:
    p = pod(
        envFrom=[{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        env=[
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "greeting"}}},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MSG", "value": "$(GREETING) from $(POD), $$(GREETING), $(UNKNOWN)"},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
        ],
    )
    env = dict(S.resolve_env(p, p["spec"]["containers"][0], sources(), node="edge-1", host_ip="10.0.0.1", pod_ip="10.0.0.1"))
    assert env["CM_greeting"] == "hi" and env["CM_blob"] == "\x00\x01"
    assert env["GREETING"] == "hi" and env["PASSWORD"] == "hunter2"
    assert env["POD"] == "p" and env["NODE"] == "edge-1" and env["APP"] == "x"
    assert env["MSG"] == "hi from p, $(GREETING), $(UNKNOWN)"
    assert "OPT" not in env


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}], 'configmap "missing" not found'),
        ([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nokey"}}}], "couldn't find key nokey"),
        ([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}], 'secret "missing" not found'),
        ([{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}], "unsupported fieldRef"),
    ],
)
def test_env_errors_are_config_errors(env: list, match: str) -> None:
    p = pod(env=env)
    with pytest.raises(S.ConfigError, match=match):
        S.resolve_env(p, p["spec"]["containers"][0], sources(), node="n", host_ip="", pod_ip="")


def test_command_args_expanded_and_configs_labelled() -> None:
    p = pod(command=["/bin/sh", "-c"], args=["echo $(GREETING)"], workingDir="/work", tty=True)
    c = p["spec"]["containers"][0]
    cfg = S.container_config(p, c, node="edge-1", attempt=3, env=[("GREETING", "hi")], mounts=[], grace=5)
    assert list(cfg.command) == ["/bin/sh", "-c"] and list(cfg.args) == ["echo hi"]
    assert cfg.working_dir == "/work" and cfg.tty and cfg.log_path == "app/3.log" and cfg.metadata.attempt == 3
    assert dict(cfg.labels) == {S.LABEL_NODE: "edge-1", S.LABEL_POD_NAME: "p", S.LABEL_POD_NAMESPACE: "ns1", S.LABEL_POD_UID: "1234-abcd", S.LABEL_CONTAINER: "app"}
    assert cfg.annotations[S.ANN_HASH] == S.container_hash(c)
    sb = S.sandbox_config(p, "edge-1", 1, "/logs", grace=5)
    assert sb.metadata.uid == "1234-abcd" and sb.metadata.attempt == 1 and sb.hostname == ""
    assert sb.linux.security_context.namespace_options.network == api.NODE
    assert sb.annotations[S.ANN_GRACE] == "5"


def test_spec_change_changes_hash() -> None:
    a = {"name": "c", "image": "x:1"}
    assert S.container_hash(a) == S.container_hash(dict(a)) != S.container_hash({**a, "image": "x:2"})


def test_a_reported_status_is_not_a_spec_change() -> None:
    p = pod()
    reported = {**p, "status": {"phase": "Running"}}
    assert S.without_status(reported) == S.without_status(p) == p
    assert "status" in reported  # the pod itself is left as it is
    relabelled = {**reported, "metadata": {**p["metadata"], "labels": {"app": "y"}}}
    assert S.without_status(relabelled) != S.without_status(reported)


def test_mounts_and_subpath() -> None:
    c = {"volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "data", "mountPath": "/data/x", "subPath": "x", "readOnly": True}]}
    ms = S.mounts(c, {"cfg": "/v/cfg", "data": "/v/data"}, {"cfg"})
    assert [(m.container_path, m.host_path, m.readonly) for m in ms] == [("/etc/cfg", "/v/cfg", True), ("/data/x", "/v/data/x", True)]
    with pytest.raises(S.ConfigError, match="does not define"):
        S.mounts({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, {}, set())
    with pytest.raises(S.ConfigError, match="subPath"):
        S.mounts({"volumeMounts": [{"name": "cfg", "mountPath": "/x", "subPath": "../etc"}]}, {"cfg": "/v"}, set())


def test_invalid_pods() -> None:
    with pytest.raises(S.InvalidPod):
        S.pod_ref({"metadata": {"name": "p"}})
    with pytest.raises(S.InvalidPod):
        S.containers({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": []}})
    assert S.grace_seconds({"metadata": {"deletionGracePeriodSeconds": 3}, "spec": {"terminationGracePeriodSeconds": 9}}, 30) == 3
    assert S.grace_seconds({"spec": {"terminationGracePeriodSeconds": 9}}, 30) == 9
    assert S.grace_seconds({}, 30) == 30


def test_volumes_written_updated_and_removed(tmp_path: Path) -> None:
    p = pod()
    p["spec"]["volumes"] = [
        {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "file.txt", "path": "sub/f.txt"}]}},
        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": str(tmp_path / "host"), "type": "DirectoryOrCreate"}},
    ]
    ref = S.pod_ref(p)
    src = sources()
    paths, ro = volumes.prepare(tmp_path, p, ref, src)
    assert Path(paths["cfg"], "sub", "f.txt").read_text() == "content"
    assert Path(paths["sec"], "password").read_bytes() == b"hunter2" and Path(paths["sec"], "password").stat().st_mode & 0o777 == 0o400
    assert Path(paths["scratch"]).is_dir() and Path(paths["host"]).is_dir() and ro == {"cfg", "sec"}
    src.configmaps["cm"]["data"]["file.txt"] = "changed"
    volumes.prepare(tmp_path, p, ref, src)
    assert Path(paths["cfg"], "sub", "f.txt").read_text() == "changed"
    del src.secrets["sec"]
    with pytest.raises(S.ConfigError, match='secret "sec" not found'):
        volumes.prepare(tmp_path, p, ref, src)
    assert volumes.pod_dirs(tmp_path) == [ref.dir_name]
    volumes.remove_pod_dir(tmp_path, ref.dir_name)
    assert volumes.pod_dirs(tmp_path) == [] and Path(paths["host"]).is_dir(), "hostPath content is never removed"


def test_unchanged_volumes_are_not_touched(tmp_path: Path) -> None:
    """Re-projecting a pod whose sources did not change does no file work; a changed
    source, or a directory removed under edged, is projected again."""
    p = pod()
    p["spec"]["volumes"] = [{"name": "a", "configMap": {"name": "cm"}}, {"name": "b", "configMap": {"name": "other"}}]
    ref = S.pod_ref(p)
    src = sources()
    src.configmaps["other"] = {"data": {"x": "1"}}
    paths, _ = volumes.prepare(tmp_path, p, ref, src)
    a_file, b_file = Path(paths["a"], "greeting"), Path(paths["b"], "x")
    b_file.write_text("tampered")  # only visible if edged rewrote b
    src.configmaps["cm"]["data"]["greeting"] = "hello"
    volumes.prepare(tmp_path, p, ref, src)
    assert a_file.read_text() == "hello", "a changed source is projected"
    assert b_file.read_text() == "tampered", "an unchanged source is not re-projected"
    volumes.remove_pod_dir(tmp_path, ref.dir_name)
    paths, _ = volumes.prepare(tmp_path, p, ref, src)
    assert Path(paths["b"], "x").read_text() == "1" and Path(paths["a"], "greeting").read_text() == "hello"


def test_host_path_around_protected_dirs(tmp_path: Path) -> None:
    from services.edged.spec import ConfigError
    from services.edged.volumes import check_host_path

    node = tmp_path / "node"
    (node / "edged").mkdir(parents=True)
    (tmp_path / "link").symlink_to(node / "edged")
    for bad in (str(node), str(node / "edged" / "x"), "/", str(tmp_path), str(tmp_path / "link")):
        with pytest.raises(ConfigError, match="the node's data directory"):
            check_host_path("v", bad, (str(node),))
    for ok in (str(tmp_path / "nodeX"), str(tmp_path / "other" / "node"), "/srv/data"):
        check_host_path("v", ok, (str(node),))
