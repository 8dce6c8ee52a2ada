"""Template hashes, revision numbers and ControllerRevisions (pure, no I/O).

* :func:`template_hash`: a short hash of a pod template (FNV-32a of its canonical JSON and
  the collision count, in Kubernetes' safe alphabet), the ``pod-template-hash`` of a
  Deployment's ReplicaSets and the ``controller-revision-hash`` of DaemonSet and
  StatefulSet pods. (Kubernetes hashes Go's printed form; the values differ, the use is the same.)
* ControllerRevisions store, like Kubernetes', the strategic merge patch that restores the
  template — ``{"spec": {"template": {..., "$patch": "replace"}}}`` — so ``kubectl rollout
  undo daemonset/x`` (which applies that patch) and ``rollout history --revision`` work.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from edgebus.workloads.pods import md, owner_ref

#: ``rand.SafeEncodeString``'s alphabet (no vowels, no confusable characters)
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
POD_TEMPLATE_HASH = "pod-template-hash"
CONTROLLER_REVISION_HASH = "controller-revision-hash"
CR_HASH_LABEL = "controller.kubernetes.io/hash"


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def _canonical(x: Any) -> bytes:
    return json.dumps(x, sort_keys=True, separators=(",", ":")).encode()


def template_hash(template: dict[str, Any], collision_count: int = 0) -> str:
    data = _canonical(template) + (str(collision_count).encode() if collision_count else b"")
    return "".join(_ALPHANUMS[ord(ch) % len(_ALPHANUMS)] for ch in str(fnv32a(data)))


def strip_hash_label(template: dict[str, Any], label: str = POD_TEMPLATE_HASH) -> dict[str, Any]:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(label, None)
        if not labels:
            t["metadata"].pop("labels")
        if not t["metadata"]:
            t.pop("metadata")
    return t


def equal_ignoring_hash(a: dict[str, Any], b: dict[str, Any], label: str = POD_TEMPLATE_HASH) -> bool:
    return _canonical(strip_hash_label(a, label)) == _canonical(strip_hash_label(b, label))


def revision_of(obj: dict[str, Any]) -> int:
    try:
        return int((md(obj).get("annotations") or {}).get(REVISION_ANNOTATION) or 0)
    except ValueError:
        return 0


# -- ControllerRevisions -------------------------------------------------------------


def revision_data(template: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {**copy.deepcopy(template), "$patch": "replace"}}}


def template_of(revision: dict[str, Any]) -> dict[str, Any]:
    t = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    t.pop("$patch", None)
    return t


def new_controller_revision(owner: dict[str, Any], template: dict[str, Any], number: int, hash_: str) -> dict[str, Any]:
    labels = {**((template.get("metadata") or {}).get("labels") or {}), CR_HASH_LABEL: hash_}
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{md(owner).get('name')}-{hash_}",
            "namespace": md(owner).get("namespace") or "default",
            "labels": labels,
            "ownerReferences": [owner_ref(owner)],
        },
        "data": revision_data(template),
        "revision": number,
    }


def next_revision(revisions: list[dict[str, Any]]) -> int:
    return max((int(r.get("revision") or 0) for r in revisions), default=0) + 1


def matching_revision(revisions: list[dict[str, Any]], template: dict[str, Any]) -> dict[str, Any] | None:
    """The newest revision that stores exactly ``template``."""
    want = _canonical(template)
    same = [r for r in revisions if _canonical(template_of(r)) == want]
    return max(same, key=lambda r: int(r.get("revision") or 0)) if same else None


def history_to_delete(revisions: list[dict[str, Any]], keep: int, live: set[str]) -> list[dict[str, Any]]:
    """Old revisions past ``revisionHistoryLimit`` (oldest first), never one in ``live``
    (the current and update revisions, and those pods still run)."""
    old = sorted((r for r in revisions if md(r).get("name") not in live), key=lambda r: int(r.get("revision") or 0))
    excess = len(old) - max(keep, 0)
    return old[:excess] if excess > 0 else []
