"""edgebus.objects.validation: Kubernetes-style validation of every served resource."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from edgebus.errors import Invalid
from edgebus.objects import CONFIGMAPS, NAMESPACES, NODES, PODS, RESOURCES, SECRETS, Resource
from edgebus.objects.validation import MAX_CONFIG_BYTES, normalize_secret, validate

VALID: dict[str, dict[str, Any]] = {
    "namespaces": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
    "nodes": {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "edge-1.site", "labels": {"node-role.kubernetes.io/edge": ""}},
        "spec": {},
    },
    "pods": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web.v1",
            "namespace": "default",
            "labels": {"app": "web", "example.com/tier": "front_end.1"},
            "annotations": {"example.com/note": "anything goes here: !@#"},
        },
        "spec": {
            "nodeName": "edge-1.site",
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 5,
            "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}],
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "imagePullPolicy": "IfNotPresent",
                    "args": ["--port", "80"],
                    "env": [{"name": "MODE", "value": "x"}, {"name": "my.var-1", "value": "y"}],
                    "ports": [{"containerPort": 80}, {"containerPort": 65535}],
                },
                {"name": "sidecar", "image": "busybox"},
            ],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "web-config"}},
                {"name": "creds", "secret": {"secretName": "web-secret"}},
            ],
        },
    },
    "configmaps": {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config", "namespace": "default"},
        "data": {"app.properties": "a=b\n", "KEY_1": "", "-dash": "x"},
        "binaryData": {"logo.png": base64.b64encode(b"\x89PNG").decode()},
    },
    "secrets": {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "web-secret", "namespace": "default"},
        "type": "Opaque",
        "data": {"password": base64.b64encode(b"hunter2").decode()},
        "stringData": {"user": "admin"},
    },
    "services": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"edgebus.io/lb-policy": "random"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}, {"name": "admin", "port": 9000, "targetPort": 9001}]},
    },
    "endpoints": {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1", "nodeName": "edge-1", "targetRef": {"kind": "Pod", "name": "web-1"}}], "ports": [{"name": "http", "port": 18081}]}],
    },
    "events": {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "thermostat.0123abcd", "namespace": "default"},
        "involvedObject": {"apiVersion": "devices.kubeedge.io/v1beta1", "kind": "Device", "name": "thermostat", "namespace": "default"},
        "reason": "RuleFired",
        "message": "rule fan-on: temperature is 30.5: set fan = true",
        "type": "Normal",
    },
    "devicemodels": {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "DeviceModel",
        "metadata": {"name": "thermostat-model", "namespace": "default"},
        "spec": {
            "protocol": "modbus",
            "properties": [
                {"name": "temperature", "type": "FLOAT", "accessMode": "ReadOnly", "minimum": "-40", "maximum": "120", "unit": "Celsius"},
                {"name": "fan", "type": "BOOLEAN", "accessMode": "ReadWrite"},
            ],
        },
    },
    "runtimeclasses": {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "wasm"},
        "handler": "wasm",
        "scheduling": {"nodeSelector": {"tier": "small"}, "tolerations": [{"key": "small", "operator": "Exists"}]},
    },
    "poddisruptionbudgets": {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
    },
    "devices": {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "thermostat", "namespace": "default"},
        "spec": {
            "deviceModelRef": {"name": "thermostat-model"},
            "nodeName": "edge-1",
            "protocol": {"protocolName": "modbus", "configData": {"ip": "127.0.0.1", "port": 5020}},
            "properties": [
                {
                    "name": "temperature",
                    "collectCycle": 500,
                    "reportCycle": 1000,
                    "visitors": {"protocolName": "modbus", "configData": {"register": "InputRegister", "offset": 0, "limit": 1, "scale": 0.1, "dataType": "int16"}},
                },
                {"name": "fan", "desired": {"value": "false"}, "visitors": {"protocolName": "modbus", "configData": {"register": "CoilRegister", "offset": 0}}},
            ],
            "rules": [{"name": "fan-on", "when": "temperature > 30", "set": {"fan": "true"}}],
        },
    },
}

VALID.update(
    {
        "serviceaccounts": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": "default"}, "automountServiceAccountToken": False},
        "roles": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": "default"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"], "resourceNames": ["web"]}],
        },
        "clusterroles": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:health-reader"},
            "rules": [{"nonResourceURLs": ["/healthz", "/readyz*"], "verbs": ["get"]}, {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
        "rolebindings": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "read-pods", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "builder"}],
        },
        "clusterrolebindings": {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "ops:view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "ops"}, {"kind": "ServiceAccount", "name": "x", "namespace": "ci"}],
        },
    }
)


_TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "busybox:1"}]}}
_JOB_TEMPLATE = {"metadata": {"labels": {"app": "batch"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "w", "image": "busybox:1"}]}}
VALID.update(
    {
        "deployments": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": _TEMPLATE, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "50%"}}},
        },
        "replicasets": {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}, "template": _TEMPLATE},
        },
        "daemonsets": {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": _TEMPLATE, "updateStrategy": {"type": "OnDelete"}},
        },
        "statefulsets": {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "Parallel", "selector": {"matchLabels": {"app": "web"}}, "template": _TEMPLATE},
        },
        "controllerrevisions": {
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": "agent-5d9f7c", "namespace": "default"},
            "revision": 2,
            "data": {"spec": {"template": {"$patch": "replace"}}},
        },
        "jobs": {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default"},
            "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 1, "activeDeadlineSeconds": 60, "template": _JOB_TEMPLATE},
        },
        "cronjobs": {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default"},
            "spec": {"schedule": "*/5 * * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": {"template": _JOB_TEMPLATE}}},
        },
    }
)
VALID.update(
    {
        "nodegroups": {"apiVersion": "apps.kubeedge.io/v1alpha1", "kind": "NodeGroup", "metadata": {"name": "site-a"}, "spec": {"nodes": ["edge-1"], "matchLabels": {"site": "a"}}},
        "edgeapplications": {
            "apiVersion": "apps.kubeedge.io/v1alpha1",
            "kind": "EdgeApplication",
            "metadata": {"name": "app", "namespace": "default"},
            "spec": {
                "workloadTemplate": {"manifests": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {}}]},
                "workloadScope": {"targetNodeGroups": [{"name": "site-a", "overriders": {"replicas": 2, "imageOverriders": [{"component": "Tag", "operator": "replace", "value": "v2"}]}}]},
            },
        },
    }
)
_MINIMAL = {
    "deployments": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
    "replicasets": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
    "daemonsets": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
    "statefulsets": {"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
    "controllerrevisions": {"revision": 1},
    "runtimeclasses": {"handler": "runc"},
    "nodegroups": {"spec": {}},
    "edgeapplications": {"spec": {"workloadScope": {}}},
    "jobs": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}},
    "cronjobs": {"spec": {"schedule": "@hourly", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}}}},
}


def obj(resource: str, **changes: Any) -> dict[str, Any]:
    """A deep copy of the valid sample with dotted-path changes (``None`` deletes)."""
    o = copy.deepcopy(VALID[resource])
    for path, value in changes.items():
        *parents, last = path.split("__")
        cur: Any = o
        for p in parents:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        if value is _DEL:
            del cur[last]
        elif isinstance(cur, list):
            cur[int(last)] = value
        else:
            cur[last] = value
    return o


_DEL = object()


def invalid(resource: Resource, o: Any, **kw: Any) -> Invalid:
    with pytest.raises(Invalid) as ei:
        validate(resource, o, **kw)
    return ei.value


def cause_fields(exc: Invalid) -> list[str]:
    return [c["field"] for c in exc.details["causes"]]


# ---------------------------------------------------------------------------------------
# Valid objects, names
# ---------------------------------------------------------------------------------------


def test_every_resource_has_a_sample() -> None:
    assert set(VALID) == set(RESOURCES)


@pytest.mark.parametrize("plural", sorted(RESOURCES))
def test_valid_objects_pass(plural: str) -> None:
    validate(RESOURCES[plural], obj(plural), namespace="default")


@pytest.mark.parametrize("plural", sorted(RESOURCES))
def test_minimal_objects_pass(plural: str) -> None:
    o: dict[str, Any] = {"metadata": {"name": "x"}}
    if plural == "pods":
        o["spec"] = {"containers": [{"name": "c", "image": "i"}]}
    if plural == "devices":
        o["spec"] = {"deviceModelRef": {"name": "m"}}
    if plural == "events":
        o["involvedObject"] = {"kind": "Pod", "name": "p"}
    if plural == "services":
        o["spec"] = {"ports": [{"port": 80}]}
    if plural in ("rolebindings", "clusterrolebindings"):
        o["roleRef"] = {"kind": "ClusterRole", "name": "view"}
    o.update(copy.deepcopy(_MINIMAL.get(plural, {})))
    validate(RESOURCES[plural], o)


@pytest.mark.parametrize("plural", sorted(RESOURCES))
@pytest.mark.parametrize("name", ["", "Web", "web_1", "-web", "web-", "a" * 254, "we b", "web/1", None, 5])
def test_invalid_names(plural: str, name: Any) -> None:
    exc = invalid(RESOURCES[plural], obj(plural, metadata__name=name))
    assert "metadata.name" in cause_fields(exc)


def test_namespace_names_are_labels_not_subdomains() -> None:
    validate(PODS, obj("pods", metadata__name="a.b"))
    exc = invalid(NAMESPACES, obj("namespaces", metadata__name="a.b"))
    assert cause_fields(exc) == ["metadata.name"]
    assert "RFC 1123 label" in exc.message
    exc = invalid(NAMESPACES, obj("namespaces", metadata__name="a" * 64))
    assert cause_fields(exc) == ["metadata.name"]


@pytest.mark.parametrize("plural", ["pods", "configmaps", "namespaces"])
def test_name_with_trailing_newline_is_rejected(plural: str) -> None:
    exc = invalid(RESOURCES[plural], obj(plural, metadata__name="web\n"))
    assert "metadata.name" in cause_fields(exc)


def test_missing_metadata() -> None:
    exc = invalid(CONFIGMAPS, {"data": {}})
    assert cause_fields(exc) == ["metadata"]
    assert exc.message == 'ConfigMap "" is invalid: metadata: Required value'


def test_body_must_be_an_object() -> None:
    exc = invalid(PODS, ["not", "a", "pod"])
    assert exc.code == 422 and "body must be a JSON object" in exc.message


def test_kind_and_api_version_must_match() -> None:
    exc = invalid(PODS, obj("pods", kind="ConfigMap", apiVersion="apps/v1"))
    assert set(cause_fields(exc)) == {"kind", "apiVersion"}


def test_namespace_must_match_request() -> None:
    validate(PODS, obj("pods"), namespace="default")
    exc = invalid(PODS, obj("pods"), namespace="other")
    assert cause_fields(exc) == ["metadata.namespace"]
    # Cluster-scoped resources ignore it.
    validate(NODES, obj("nodes", metadata__namespace="x"), namespace="other")


# ---------------------------------------------------------------------------------------
# Labels and annotations
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["-app", "app-", "a" * 64, "", "Example.com/app", "a/b/c", "exa_mple.com/app", "app name", "/"],
)
def test_bad_label_keys(key: str) -> None:
    exc = invalid(PODS, obj("pods", metadata__labels={key: "v"}))
    assert cause_fields(exc) == ["metadata.labels"]


@pytest.mark.parametrize("key", ["app", "App_1.x", "example.com/app", "a" * 63, "k8s.io/" + "a" * 63])
def test_good_label_keys(key: str) -> None:
    validate(PODS, obj("pods", metadata__labels={key: "v"}))


def test_label_key_with_empty_prefix_is_rejected() -> None:
    invalid(PODS, obj("pods", metadata__labels={"/app": "v"}))


@pytest.mark.parametrize("value", ["-v", "v-", "a" * 64, "v v", "v/1", "ü"])
def test_bad_label_values(value: str) -> None:
    exc = invalid(PODS, obj("pods", metadata__labels={"app": value}))
    assert cause_fields(exc) == ["metadata.labels[app]"]


@pytest.mark.parametrize("value", ["", "v", "V1.2_x-y", "a" * 63])
def test_good_label_values(value: str) -> None:
    validate(PODS, obj("pods", metadata__labels={"app": value}))


def test_label_value_must_be_a_string() -> None:
    exc = invalid(PODS, obj("pods", metadata__labels={"replicas": 3}))
    assert cause_fields(exc) == ["metadata.labels[replicas]"]
    assert exc.details["causes"][0]["reason"] == "FieldValueTypeInvalid"


def test_labels_must_be_a_map() -> None:
    exc = invalid(PODS, obj("pods", metadata__labels=["app=web"]))
    assert cause_fields(exc) == ["metadata.labels"]


def test_annotation_values_are_free_but_keys_are_checked() -> None:
    validate(PODS, obj("pods", metadata__annotations={"note": "-- anything /at all/ " * 10}))
    exc = invalid(PODS, obj("pods", metadata__annotations={"bad key": "v"}))
    assert cause_fields(exc) == ["metadata.annotations"]


# ---------------------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------------------


def test_message_reads_like_kubernetes() -> None:
    o = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c"}]}}
    exc = invalid(PODS, o)
    assert str(exc) == exc.message == 'Pod "x" is invalid: spec.containers[0].image: Required value'
    st = exc.status()
    assert st["kind"] == "Status" and st["status"] == "Failure"
    assert st["code"] == 422 and st["reason"] == "Invalid"
    assert st["message"] == exc.message
    assert st["details"]["name"] == "x"
    assert st["details"]["kind"] == "Pod"  # the kind, as Kubernetes puts it (kubectl: The Pod "x" is invalid)
    assert st["details"]["causes"] == [
        {"field": "spec.containers[0].image", "reason": "FieldValueRequired", "message": "Required value"}
    ]


def test_several_causes_are_listed_together() -> None:
    o = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "C"}], "restartPolicy": "Sometimes"}}
    exc = invalid(PODS, o)
    assert cause_fields(exc) == ["spec.containers[0].name", "spec.containers[0].image", "spec.restartPolicy"]
    assert exc.message.startswith('Pod "x" is invalid: [spec.containers[0].name: Invalid value: "C": ')
    assert exc.message.endswith(
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"]'
    )
    assert exc.message.count("; ") == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"spec": _DEL}, "spec"),
        ({"spec": "nope"}, "spec"),
        ({"spec__containers": _DEL}, "spec.containers"),
        ({"spec__containers": []}, "spec.containers"),
        ({"spec__containers": {"name": "c"}}, "spec.containers"),
        ({"spec__containers__0__image": _DEL}, "spec.containers[0].image"),
        ({"spec__containers__0__image": "  "}, "spec.containers[0].image"),
        ({"spec__containers__0__image": 5}, "spec.containers[0].image"),
        ({"spec__containers__0__name": _DEL}, "spec.containers[0].name"),
        ({"spec__containers__0__name": "a.b"}, "spec.containers[0].name"),
        ({"spec__containers__1__name": "web"}, "spec.containers[1].name"),
        ({"spec__initContainers__0__name": "web"}, "spec.initContainers[0].name"),
        ({"spec__initContainers__0__image": _DEL}, "spec.initContainers[0].image"),
        ({"spec__initContainers": "init"}, "spec.initContainers"),
        ({"spec__containers__0": "web"}, "spec.containers[0]"),
        ({"spec__restartPolicy": "always"}, "spec.restartPolicy"),
        ({"spec__containers__0__imagePullPolicy": "Sometimes"}, "spec.containers[0].imagePullPolicy"),
        ({"spec__containers__0__command": "sh -c true"}, "spec.containers[0].command"),
        ({"spec__containers__0__args": ["a", 1]}, "spec.containers[0].args"),
        ({"spec__containers__0__env": {"A": "b"}}, "spec.containers[0].env"),
        ({"spec__containers__0__env__0__name": "1ABC"}, "spec.containers[0].env[0].name"),
        ({"spec__containers__0__env__0__name": "A B"}, "spec.containers[0].env[0].name"),
        ({"spec__containers__0__ports": 80}, "spec.containers[0].ports"),
        ({"spec__containers__0__ports__0__containerPort": 0}, "spec.containers[0].ports[0].containerPort"),
        ({"spec__containers__0__ports__0__containerPort": 65536}, "spec.containers[0].ports[0].containerPort"),
        ({"spec__containers__0__ports__0__containerPort": -1}, "spec.containers[0].ports[0].containerPort"),
        ({"spec__containers__0__ports__0__containerPort": "80"}, "spec.containers[0].ports[0].containerPort"),
        ({"spec__containers__0__ports__0__containerPort": True}, "spec.containers[0].ports[0].containerPort"),
        ({"spec__containers__0__ports__0": {"hostPort": 80}}, "spec.containers[0].ports[0].containerPort"),
        ({"spec__nodeName": "Edge_1"}, "spec.nodeName"),
        ({"spec__terminationGracePeriodSeconds": -1}, "spec.terminationGracePeriodSeconds"),
        ({"spec__terminationGracePeriodSeconds": True}, "spec.terminationGracePeriodSeconds"),
        ({"spec__terminationGracePeriodSeconds": "5"}, "spec.terminationGracePeriodSeconds"),
        ({"spec__volumes": {"cfg": {}}}, "spec.volumes"),
        ({"spec__volumes__1__name": "cfg"}, "spec.volumes[1].name"),
        ({"spec__volumes__0__name": "Cfg"}, "spec.volumes[0].name"),
        ({"spec__volumes__0__configMap": {}}, "spec.volumes[0].configMap.name"),
        ({"spec__volumes__1__secret": {"secretName": "Bad_Name"}}, "spec.volumes[1].secret.secretName"),
    ],
)
def test_invalid_pods(changes: dict[str, Any], field: str) -> None:
    exc = invalid(PODS, obj("pods", **changes))
    assert cause_fields(exc) == [field]
    assert exc.message.startswith('Pod "web.v1" is invalid: ')
    assert field in exc.message


def test_duplicate_container_name_reason() -> None:
    exc = invalid(PODS, obj("pods", spec__containers__1__name="web"))
    assert exc.details["causes"] == [
        {"field": "spec.containers[1].name", "reason": "FieldValueDuplicate", "message": 'Duplicate value: "web"'}
    ]


def test_restart_policy_values() -> None:
    for rp in ("Always", "OnFailure", "Never"):
        validate(PODS, obj("pods", spec__restartPolicy=rp))
    exc = invalid(PODS, obj("pods", spec__restartPolicy="Sometimes"))
    assert exc.details["causes"][0]["reason"] == "FieldValueNotSupported"


@pytest.mark.parametrize(
    "changes",
    [{"spec__containers__0__name": ["web"]}, {"spec__volumes__0__name": {"n": 1}}],
)
def test_unhashable_names_are_invalid_not_a_crash(changes: dict[str, Any]) -> None:
    invalid(PODS, obj("pods", **changes))


# ---------------------------------------------------------------------------------------
# ConfigMaps and Secrets
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, None, True, ["a"], {"a": "b"}])
def test_configmap_values_must_be_strings(value: Any) -> None:
    exc = invalid(CONFIGMAPS, obj("configmaps", data={"k": value}))
    assert cause_fields(exc) == ["data[k]"]
    assert exc.details["causes"][0]["reason"] == "FieldValueTypeInvalid"


@pytest.mark.parametrize("key", ["a/b", "a b", "", "k:v", "ключ", "a" * 254])
def test_bad_config_keys(key: str) -> None:
    exc = invalid(CONFIGMAPS, obj("configmaps", data={key: "v"}))
    assert cause_fields(exc) == [f"data[{key}]"]
    exc = invalid(SECRETS, obj("secrets", data={key: "dg=="}))
    assert cause_fields(exc) == [f"data[{key}]"]


@pytest.mark.parametrize("key", [".", "..", "..data"])
def test_dot_config_keys_are_rejected(key: str) -> None:
    invalid(CONFIGMAPS, obj("configmaps", data={key: "v"}))


def test_configmap_data_must_be_a_map() -> None:
    exc = invalid(CONFIGMAPS, obj("configmaps", data=["a"]))
    assert cause_fields(exc) == ["data"]


def test_configmap_binary_data_must_be_base64() -> None:
    exc = invalid(CONFIGMAPS, obj("configmaps", binaryData={"b": "not base64!"}))
    assert cause_fields(exc) == ["binaryData[b]"]


def test_configmap_key_in_both_data_and_binary_data() -> None:
    exc = invalid(CONFIGMAPS, obj("configmaps", data={"k": "v"}, binaryData={"k": "dg=="}))
    assert exc.details["causes"][0]["reason"] == "FieldValueDuplicate"
    assert cause_fields(exc) == ["binaryData[k]"]


def test_configmap_size_limit() -> None:
    half = MAX_CONFIG_BYTES // 2
    validate(CONFIGMAPS, obj("configmaps", data={"a": "x" * half, "b": "x" * (half - 100)}, binaryData={}))
    exc = invalid(CONFIGMAPS, obj("configmaps", data={"a": "x" * half, "b": "x" * (half + 1)}, binaryData={}))
    assert exc.details["causes"] == [
        {"field": "data", "reason": "FieldValueTooLong", "message": f"Too long: must have at most {MAX_CONFIG_BYTES} bytes"}
    ]
    # Binary data counts its decoded size.
    blob = base64.b64encode(b"\0" * (half + 1)).decode()
    invalid(CONFIGMAPS, obj("configmaps", data={"a": "x" * half}, binaryData={"b": blob}))


def test_configmap_size_counts_utf8_bytes() -> None:
    n = MAX_CONFIG_BYTES // 2 + 1  # 2 bytes each in UTF-8: over the limit, though fewer characters
    invalid(CONFIGMAPS, obj("configmaps", data={"a": "é" * n}, binaryData={}))


@pytest.mark.parametrize("value", ["not base64!", "abc", "a=bc", 5])
def test_secret_data_must_be_base64_strings(value: Any) -> None:
    exc = invalid(SECRETS, obj("secrets", data={"password": value}))
    assert cause_fields(exc) == ["data[password]"]
    # The secret value itself is never echoed back.
    if isinstance(value, str):
        assert value not in exc.message


def test_secret_size_limit_is_on_decoded_bytes() -> None:
    ok = base64.b64encode(b"\0" * MAX_CONFIG_BYTES).decode()  # encoded > 1 MiB, decoded == 1 MiB
    validate(SECRETS, obj("secrets", data={"k": ok}))
    big = base64.b64encode(b"\0" * (MAX_CONFIG_BYTES + 1)).decode()
    exc = invalid(SECRETS, obj("secrets", data={"k": big}))
    assert cause_fields(exc) == ["data"]


def test_secret_string_data_and_type() -> None:
    exc = invalid(SECRETS, obj("secrets", stringData={"user": 5}))
    assert cause_fields(exc) == ["stringData[user]"]
    exc = invalid(SECRETS, obj("secrets", type=5))
    assert cause_fields(exc) == ["type"]


def test_node_spec_must_be_an_object() -> None:
    exc = invalid(NODES, obj("nodes", spec=["x"]))
    assert cause_fields(exc) == ["spec"]


# ---------------------------------------------------------------------------------------
# normalize_secret
# ---------------------------------------------------------------------------------------


def test_normalize_secret_folds_string_data() -> None:
    s = obj("secrets")
    normalize_secret(s)
    assert "stringData" not in s
    assert s["data"] == {
        "password": base64.b64encode(b"hunter2").decode(),
        "user": base64.b64encode(b"admin").decode(),
    }
    assert s["type"] == "Opaque"
    validate(SECRETS, s)


def test_normalize_secret_string_data_wins_and_defaults() -> None:
    s = {"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {"k": "b2xk"}, "stringData": {"k": "névé"}}
    normalize_secret(s)
    assert s["data"] == {"k": base64.b64encode("névé".encode()).decode()}
    assert s["type"] == "kubernetes.io/basic-auth"

    s2: dict[str, Any] = {"metadata": {"name": "s"}, "data": None, "stringData": {"a": "b"}}
    normalize_secret(s2)
    assert s2["data"] == {"a": "Yg=="}

    s3: dict[str, Any] = {"metadata": {"name": "s"}}
    normalize_secret(s3)
    assert s3 == {"metadata": {"name": "s"}, "type": "Opaque"}


# -- the registry of per-resource checks -------------------------------------------------------


def test_every_registered_check_belongs_to_a_served_resource() -> None:
    import edgebus.objects as objects_package
    from edgebus.objects import checks, device_views, resources

    served = {v.plural for mod in (objects_package, resources, device_views) for v in vars(mod).values() if isinstance(v, Resource)}
    assert checks.registered() <= served, checks.registered() - served
    # every served kind with a body of its own has a check (namespaces only have names)
    assert set(RESOURCES) - checks.registered() == {"namespaces"}


def test_a_resource_has_one_check() -> None:
    from edgebus.objects import checks

    with pytest.raises(ValueError, match="pods: a check is already registered"):
        checks.checks(PODS.plural)(lambda c, obj: None)
    assert checks.kind_check(PODS.plural) is not None and checks.kind_check(PODS.plural).__name__ == "check_pod"
