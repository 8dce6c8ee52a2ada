"""Validation as Kubernetes does it: quantities, what a pod update may change, field
selectors per resource, ``get all`` categories, JSON-patch failure texts, init containers
in the pod table and status."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from edgebus.errors import BadRequest, Invalid
from edgebus.kube import api_resource_list, watch_params
from edgebus.objects import NODES, PODS
from edgebus.objects.pod_checks import check_pod_update
from edgebus.objects.quantity import QUANTITY_REGEX, parse_quantity
from edgebus.objects.selectors import check_field_labels
from edgebus.objects.tables import pod_restarts, pod_status
from edgebus.objects.validation import validate
from services.apiserver import logic
from services.edged.status import EXITED, RUNNING, CState, init_progress


def _pod(**container: Any) -> dict[str, Any]:
    c = {"name": "main", "image": "busybox", **container}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "edge-1", "containers": [c]}}


# -- quantities ----------------------------------------------------------------------------


@pytest.mark.parametrize(("q", "want"), [("500m", Decimal("0.5")), ("1e3", Decimal(1000)), ("1.5Gi", Decimal(3 << 29)), ("2k", Decimal(2000)), ("100u", Decimal("0.0001")), (".5", Decimal("0.5")), (7, Decimal(7))])
def test_quantities_parse(q: object, want: Decimal) -> None:
    assert parse_quantity(q) == want


@pytest.mark.parametrize("bad", ["lots", "", "1XB", "1 Gi", " 1", "Mi", "1.2.3", "--1", True, None, [1]])
def test_bad_quantities_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="quantities must match the regular expression"):
        parse_quantity(bad)


def test_container_resources_must_be_quantities() -> None:
    with pytest.raises(Invalid) as e:
        validate(PODS, _pod(resources={"limits": {"cpu": "lots"}}))
    assert str(e.value) == f"""Pod "p" is invalid: spec.containers[0].resources.limits[cpu]: Invalid value: "lots": quantities must match the regular expression '{QUANTITY_REGEX}'"""
    assert e.value.details["causes"][0]["field"] == "spec.containers[0].resources.limits[cpu]"


def test_negative_and_request_above_limit_are_invalid() -> None:
    with pytest.raises(Invalid) as e:
        validate(PODS, _pod(resources={"requests": {"memory": "-1Mi"}}))
    assert "must be greater than or equal to 0" in str(e.value)
    with pytest.raises(Invalid) as e:
        validate(PODS, _pod(resources={"limits": {"cpu": "100m"}, "requests": {"cpu": "1"}}))
    assert "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 100m" in str(e.value)
    validate(PODS, _pod(resources={"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "500m", "memory": 1048576}}))


def test_init_containers_and_volumes_and_nodes_quantities() -> None:
    p = _pod()
    p["spec"]["initContainers"] = [{"name": "setup", "image": "busybox", "resources": {"requests": {"cpu": "a lot"}}}]
    p["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {"sizeLimit": "huge"}}]
    with pytest.raises(Invalid) as e:
        validate(PODS, p)
    fields = [c["field"] for c in e.value.details["causes"]]
    assert fields == ["spec.initContainers[0].resources.requests[cpu]", "spec.volumes[0].emptyDir.sizeLimit"]
    node = {"metadata": {"name": "edge-1"}, "status": {"capacity": {"cpu": "lots", "memory": "1Gi"}}}
    with pytest.raises(Invalid, match=r"status.capacity\[cpu\]"):
        validate(NODES, node)


# -- pod updates ---------------------------------------------------------------------------


def _changed(fn: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    old = _pod(command=["sleep", "3600"], resources={"limits": {"cpu": "1"}})
    new = copy.deepcopy(old)
    fn(new["spec"])
    return old, new


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["containers"][0].update(command=["sh"]),
        lambda s: s["containers"][0]["resources"]["limits"].update(cpu="2"),
        lambda s: s.update(nodeName="edge-2"),
        lambda s: s.update(restartPolicy="Never"),
        lambda s: s["containers"].append({"name": "extra", "image": "busybox"}),
        lambda s: s.update(hostNetwork=True),
    ],
)
def test_pod_spec_is_immutable(change: Any) -> None:
    old, new = _changed(change)
    with pytest.raises(Invalid) as e:
        check_pod_update(old, new)
    msg = str(e.value)
    assert msg.startswith('Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`')
    assert e.value.details["causes"][0]["reason"] == "FieldValueForbidden"


def test_pod_update_may_change_what_kubernetes_allows() -> None:
    for change in (
        lambda s: s["containers"][0].update(image="busybox:2"),
        lambda s: s.update(activeDeadlineSeconds=30),
        lambda s: s.update(tolerations=[{"key": "k", "operator": "Exists"}]),
    ):
        old, new = _changed(change)
        check_pod_update(old, new)
    old = _pod()
    old["spec"].pop("nodeName")
    new = copy.deepcopy(old)
    new["spec"]["nodeName"] = "edge-1"  # binding an unbound pod
    check_pod_update(old, new)


def test_tolerations_may_only_be_added_and_deadline_only_shortened() -> None:
    old = _pod()
    old["spec"]["tolerations"] = [{"key": "a", "operator": "Exists"}]
    old["spec"]["activeDeadlineSeconds"] = 60
    new = copy.deepcopy(old)
    new["spec"]["tolerations"] = []
    with pytest.raises(Invalid, match="Forbidden"):
        check_pod_update(old, new)
    new = copy.deepcopy(old)
    new["spec"]["activeDeadlineSeconds"] = 120
    with pytest.raises(Invalid, match="must be less than or equal to previous value"):
        check_pod_update(old, new)


# -- field selectors and discovery ---------------------------------------------------------


def test_unknown_field_selectors_are_refused() -> None:
    check_field_labels("spec.nodeName=edge-1,status.phase!=Running,metadata.name=x", "pods")
    check_field_labels("involvedObject.name=x,type=Warning", "events")
    check_field_labels("metadata.namespace=default", "configmaps")
    with pytest.raises(BadRequest, match="field label not supported: spec.foo"):
        check_field_labels("spec.foo=bar", "pods")
    with pytest.raises(BadRequest, match="field label not supported: data.k"):
        check_field_labels("data.k=v", "configmaps")
    with pytest.raises(BadRequest, match="field label not supported"):
        watch_params({"watch": "1", "fieldSelector": "spec.foo=bar"}, "pods")


def test_get_all_lists_pods_and_services_by_category() -> None:
    doc = api_resource_list()
    cats = {r["name"]: r.get("categories") for r in doc["resources"]}
    assert cats["pods"] == ["all"] and cats["services"] == ["all"]
    assert cats["configmaps"] is None and cats["secrets"] is None


# -- JSON patch texts ----------------------------------------------------------------------


def test_failed_json_patch_speaks_kubernetes_not_python() -> None:
    with pytest.raises(Invalid) as e:
        logic.json_patch({"metadata": {"name": "x"}}, [{"op": "test", "path": "/metadata/name", "value": "y"}])
    assert str(e.value) == "the server rejected our request due to an error in our request: testing value /metadata/name failed: test failed"
    with pytest.raises(Invalid) as e:
        logic.json_patch({"a": {"b": 1}}, [{"op": "replace", "path": "/a/c/d", "value": 1}])
    assert str(e.value) == 'the server rejected our request due to an error in our request: replace operation does not apply: doc is missing path: "/a/c/d": missing value'
    for bad in ([{"op": "remove", "path": "/a/zz"}], [{"op": "move", "from": "/nope", "path": "/b"}], [{"op": "add", "path": "/a/b/c", "value": 1}]):
        with pytest.raises(Invalid) as e:
            logic.json_patch({"a": {"b": 1}}, bad)
        assert "dict" not in str(e.value) and "int" not in str(e.value) and "(" not in str(e.value)


# -- init containers -----------------------------------------------------------------------


def _c(state: str, code: int = 0) -> CState:
    return CState(id="x", name="i", attempt=0, state=state, exit_code=code)


def test_init_progress() -> None:
    assert init_progress([], "Always") == "done"
    assert init_progress([_c(EXITED), _c(EXITED)], "Never") == "done"
    assert init_progress([_c(EXITED), _c(RUNNING)], "Never") == "running"
    assert init_progress([_c(EXITED), None], "Always") == "running"
    assert init_progress([_c(EXITED, 1), None], "OnFailure") == "running"
    assert init_progress([_c(EXITED, 1), None], "Never") == "failed"


def test_pod_table_shows_init_progress_as_kubectl() -> None:
    def pod(*inits: dict[str, Any]) -> dict[str, Any]:
        return {
            "spec": {"initContainers": [{"name": f"i{n}"} for n in range(2)], "containers": [{"name": "main"}]},
            "status": {"phase": "Pending", "initContainerStatuses": list(inits), "containerStatuses": [{"state": {"waiting": {"reason": "PodInitializing"}}, "restartCount": 0}]},
        }

    done = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}, "restartCount": 0}
    running = {"state": {"running": {}}, "restartCount": 0}
    assert pod_status(pod(done, running)) == "Init:1/2"
    assert pod_status(pod(running, {"state": {"waiting": {"reason": "PodInitializing"}}})) == "Init:0/2"
    assert pod_status(pod(done, {"state": {"terminated": {"exitCode": 3, "reason": "Error"}}})) == "Init:Error"
    assert pod_status(pod({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 4}, running)) == "Init:CrashLoopBackOff"
    assert pod_restarts(pod({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 4}, running)) == "4"
    assert pod_status(pod(done, done)) == "PodInitializing"
