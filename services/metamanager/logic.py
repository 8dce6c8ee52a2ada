"""Pure decisions of metamanager (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgebus.envelope import OP_DELETE, OP_INSERT, OP_UPDATE
from edgebus.objects import Resource

APPLY = "apply"
DELETE = "delete"
SKIP = "skip"
REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Decision:
    action: str
    reason: str = ""


def decide(resource: Resource, name: str, namespace: str | None, op: str, seq: int, content: Any, current: dict[str, Any] | None) -> Decision:
    """What to do with one downstream message given the stored bookkeeping of its key.

    ``seq`` is the sync version edgecontroller stamped on the message; it only grows for a
    given node and object, so a message at or below the stored one is a redelivery (after a
    crash between commit and ack) or stale, and is skipped: applied exactly once.
    """
    if seq <= 0:
        return Decision(REJECT, "message has no sync version (seq)")
    if op not in (OP_INSERT, OP_UPDATE, OP_DELETE):
        return Decision(REJECT, f"unsupported operation {op!r}")
    if current is not None and seq <= int(current.get("sync", 0)):
        return Decision(SKIP, f"sync version {seq} already applied (stored {current.get('sync')})")
    if op == OP_DELETE:
        return Decision(DELETE)
    if not isinstance(content, dict):
        return Decision(REJECT, f"content of {op} must be an object, got {type(content).__name__}")
    md = content.get("metadata")
    if not isinstance(md, dict) or md.get("name") != name:
        return Decision(REJECT, f"object metadata.name does not match the subject ({name})")
    if resource.namespaced and (md.get("namespace") or None) != namespace:
        return Decision(REJECT, f"object metadata.namespace does not match the subject ({namespace})")
    if content.get("kind") not in (None, resource.kind):
        return Decision(REJECT, f"object kind {content.get('kind')!r} does not match resource {resource.plural}")
    return Decision(APPLY)


def version(rv: Any) -> int:
    """A cloud resourceVersion as a number (the cloud's are its store's revisions); 0 when
    there is none or it is not a number."""
    try:
        n = int(str(rv))
    except (TypeError, ValueError):
        return 0
    return max(n, 0)


@dataclass(frozen=True, slots=True)
class Kept:
    """What the metaserver keeps of a write it forwarded and the cloud accepted: the object
    as the cloud answered it (``obj``, at the cloud's resourceVersion ``rv``), or ``None``
    when the cloud deleted it (``rv`` is then the last version known, 0 if none)."""

    resource: Resource
    namespace: str | None
    name: str
    obj: dict[str, Any] | None
    rv: int


def accepted_write(resource: Resource, method: str, namespace: str | None, name: str | None, status: int, answer: Any, *, dry_run: bool) -> Kept | None:
    """What to keep of the cloud's ``answer`` (``status``, decoded JSON) to a write the
    metaserver forwarded to ``resource``'s collection (``name`` None) or item: the accepted
    object, or its deletion; ``None`` to keep nothing (a refusal, a dry run, an answer that
    is not this object - a Status, a TokenRequest, a Scale -, a collection delete)."""
    if dry_run or not 200 <= status < 300 or method not in ("POST", "PUT", "PATCH", "DELETE") or not isinstance(answer, dict):
        return None
    ns = namespace if resource.namespaced else None
    is_obj = answer.get("kind") == resource.kind and answer.get("apiVersion") == resource.api_version
    md = answer.get("metadata") if is_obj else None
    if is_obj and not isinstance(md, dict):
        return None
    if method == "DELETE":
        if name is None:
            return None
        if md is not None:
            if md.get("name") != name:
                return None
            rv = version(md.get("resourceVersion"))
            if _terminating(md) and rv:  # still there: finalizers, a pod's grace period
                return Kept(resource, ns, name, answer, rv)
            return Kept(resource, ns, name, None, rv)
        if answer.get("kind") == "Status" and answer.get("status") == "Success":
            return Kept(resource, ns, name, None, 0)
        return None
    if md is None:
        return None
    got = md.get("name")
    if not isinstance(got, str) or not got or (name is not None and got != name):
        return None
    if (md.get("namespace") or None) != ns:
        return None
    rv = version(md.get("resourceVersion"))
    return Kept(resource, ns, got, answer, rv) if rv else None


def _terminating(md: dict[str, Any]) -> bool:
    """A deleted object the cloud still holds (the answer to a delete carries a
    ``deletionTimestamp`` either way): it waits for finalizers or for its node (a pod's grace)."""
    grace = md.get("deletionGracePeriodSeconds")
    return bool(md.get("deletionTimestamp")) and (bool(md.get("finalizers")) or (isinstance(grace, int) and grace > 0))


def kept_wins(current: dict[str, Any] | None, *, delete: bool, rv: str, seq: int) -> bool:
    """Whether the copy the metaserver kept of its own write (``current``, the key's
    bookkeeping) is newer than a downstream message (its object's resourceVersion ``rv``;
    a delete is as new as its sync version ``seq``, the cloud revision that caused it).
    A kept object loses to the same or a newer version; a kept deletion only to a newer one."""
    if not current or not current.get("kept"):
        return False
    have = version(current.get("rv"))
    incoming = seq if delete else (version(rv) or seq)
    return incoming <= have if current.get("deleted") else incoming < have


#: the Node condition a full store is reported as (Kubernetes' kubelet reports the same type)
DISK_PRESSURE = "DiskPressure"


def disk_pressure_status(problem: str | None, now: str) -> dict[str, Any]:
    """The node status part metamanager reports: ``DiskPressure`` True with the store's
    problem, or False once commits succeed again."""
    cond = {
        "type": DISK_PRESSURE,
        "status": "True" if problem else "False",
        "reason": "LocalStoreFull" if problem else "LocalStoreHasSpace",
        "message": (problem or "metamanager's local store commits again")[:500],
        "lastTransitionTime": now,
        "lastHeartbeatTime": now,
    }
    return {"conditions": [cond]}
