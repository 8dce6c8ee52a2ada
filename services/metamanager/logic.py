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
