"""Server-side apply: field sets, merging, conflicts, force, removal, update managers."""

from __future__ import annotations

import pytest

from edgebus.errors import Conflict
from edgebus.objects import ssa


def pod(image: str = "busybox", **extra: object) -> dict:
    c = {"name": "main", "image": image, **extra}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"containers": [c]}}


def test_fieldsets_name_leaves_and_keyed_items() -> None:
    fs = ssa.fieldset(pod(ports=[{"containerPort": 80}]))
    assert ("f:spec", "f:containers", 'k:{"name":"main"}', ".") in fs
    assert ("f:spec", "f:containers", 'k:{"name":"main"}', "f:image") in fs
    assert ("f:spec", "f:containers", 'k:{"name":"main"}', "f:ports", 'k:{"containerPort":80}', "f:containerPort") in fs
    assert ("f:metadata", "f:labels", "f:app") in fs and not any(p[:2] == ("f:metadata", "f:name") for p in fs)
    assert ssa.from_fields_v1(ssa.to_fields_v1(fs)) == fs
    assert ssa.describe(("f:spec", "f:containers", 'k:{"name":"main"}', "f:image")) == '.spec.containers[name="main"].image'


def test_apply_conflict_force_and_removal() -> None:
    live = ssa.apply(None, pod(), "a", force=False, api_version="v1")
    assert [e["manager"] for e in live["metadata"]["managedFields"]] == ["a"]
    with pytest.raises(Conflict) as e:
        ssa.apply(live, pod("nginx"), "b", force=False, api_version="v1")
    assert str(e.value) == 'Apply failed with 1 conflict: conflict with "a" using v1: .spec.containers[name="main"].image'
    assert e.value.details["causes"][0]["field"] == '.spec.containers[name="main"].image'
    shared = ssa.apply(live, pod(), "b", force=False, api_version="v1")  # same values: both own them
    assert len(shared["metadata"]["managedFields"]) == 2
    forced = ssa.apply(live, pod("nginx"), "b", force=True, api_version="v1")
    assert forced["spec"]["containers"][0]["image"] == "nginx"
    owners = {m["manager"]: ssa.from_fields_v1(m["fieldsV1"]) for m in forced["metadata"]["managedFields"]}
    img = ("f:spec", "f:containers", 'k:{"name":"main"}', "f:image")
    assert img in owners["b"] and img not in owners["a"]
    # a drops its label: removed, since no one else owns it
    less = pod()
    del less["metadata"]["labels"]
    after = ssa.apply(live, less, "a", force=False, api_version="v1")
    assert "labels" not in after["metadata"] or not after["metadata"]["labels"]


def test_keyed_lists_merge_item_by_item() -> None:
    live = ssa.apply(None, pod(), "a", force=False, api_version="v1")
    side = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "side", "image": "x"}]}}
    both = ssa.apply(live, side, "b", force=False, api_version="v1")
    assert [c["name"] for c in both["spec"]["containers"]] == ["main", "side"]


def test_updates_take_the_fields_they_change() -> None:
    live = ssa.apply(None, pod(), "kubectl", force=False, api_version="v1")
    edited = pod()
    edited["metadata"]["labels"]["app"] = "other"
    ssa.record_update(live, edited, "kubectl-edit", api_version="v1")
    owners = {m["manager"]: ssa.from_fields_v1(m["fieldsV1"]) for m in edited["metadata"]["managedFields"]}
    assert owners["kubectl-edit"] == {("f:metadata", "f:labels", "f:app")}
    assert ("f:metadata", "f:labels", "f:app") not in owners["kubectl"]
    with pytest.raises(Conflict, match='conflict with "kubectl-edit"'):
        ssa.apply(edited, pod(), "kubectl", force=False, api_version="v1")
