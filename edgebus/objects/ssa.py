"""Server-side apply: field managers, ``managedFields`` and conflicts, as Kubernetes'
structured-merge-diff does them (the parts kubectl uses).

A field set is the set of paths to the leaves of an object (plus every keyed list item
itself), serialized as ``fieldsV1`` (``{"f:data": {"f:key": {}}}``, list items by their merge
key ``k:{"name":"main"}``, ``.`` for the item itself). Lists of objects that have a merge key
(:data:`edgebus.objects.merge.MERGE_KEYS`: containers by ``name``, ports by
``containerPort``, ...) merge item by item; other lists are atomic, owned whole.

* **apply** (``PATCH`` with ``application/apply-patch+yaml``, ``fieldManager``): the applied
  configuration is merged into the live object; fields this manager applied before and no
  longer applies are removed (unless another manager owns them too); a field whose applied
  value differs from the live one and that another manager owns is a **conflict** (409,
  ``Apply failed with N conflict(s): conflict with "m" using v1: .data.key``) unless
  ``force=true``, which takes it over. The manager then owns exactly what it applied.
* **update** (create, PUT, other PATCHes): the fields it changed become its manager's
  (operation ``Update``), and no one else's.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from edgebus.errors import Conflict

Path = tuple[str, ...]

#: lists of objects merged item by item, by this key (strategic merge's and SMD's map lists)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "tolerations": "key",
    "conditions": "type",
}
_IDENTITY = {"apiVersion", "kind"}
_META_SKIP = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"}


def _item_key(field: str, item: Any) -> str | None:
    key = MERGE_KEYS.get(field)
    if key is None or not isinstance(item, dict) or key not in item:
        return None
    return "k:" + json.dumps({key: item[key]}, separators=(",", ":"))


def fieldset(obj: dict[str, Any]) -> set[Path]:
    """The paths an object sets (identity and server-set metadata excluded, and status)."""
    out: set[Path] = set()

    def walk(v: Any, path: Path, field: str) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(x, (*path, f"f:{k}"), k)
        elif isinstance(v, list) and v and all(_item_key(field, x) for x in v):
            for x in v:
                item = (*path, str(_item_key(field, x)))
                out.add((*item, "."))
                for k, y in x.items():
                    walk(y, (*item, f"f:{k}"), k)
        else:
            out.add(path)

    for k, v in obj.items():
        if k in _IDENTITY or k == "status":
            continue
        if k == "metadata" and isinstance(v, dict):
            for mk, mv in v.items():
                if mk not in _META_SKIP:
                    walk(mv, ("f:metadata", f"f:{mk}"), mk)
            continue
        walk(v, (f"f:{k}",), k)
    return out


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for p in sorted(paths):
        node = root
        for part in p:
            node = node.setdefault(part, {})
    return root


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(tree, dict):
        return out
    for k, v in tree.items():
        p = (*prefix, k)
        if k == "." or not v:
            out.add(p)
        else:
            out |= from_fields_v1(v, p)
    return out


def _get(obj: Any, path: Path) -> Any:
    cur = obj
    field = ""
    for part in path:
        if part == ".":
            return cur
        if part.startswith("f:"):
            field = part[2:]
            if not isinstance(cur, dict) or field not in cur:
                return _MISSING
            cur = cur[field]
        elif part.startswith("k:"):
            if not isinstance(cur, list):
                return _MISSING
            cur = next((x for x in cur if _item_key(field, x) == part), _MISSING)
            if cur is _MISSING:
                return cur
    return cur


_MISSING = object()


def describe(path: Path) -> str:
    out = ""
    for part in path:
        if part.startswith("f:"):
            out += "." + part[2:]
        elif part.startswith("k:"):
            (k, v), = json.loads(part[2:]).items()
            out += f"[{k}={json.dumps(v)}]"
    return out or "."


def merge(live: Any, applied: Any, field: str = "") -> Any:
    """``applied`` laid over ``live``: maps key by key, keyed lists item by item."""
    if isinstance(live, dict) and isinstance(applied, dict):
        out = copy.deepcopy(live)
        for k, v in applied.items():
            out[k] = merge(live.get(k), v, k)
        return out
    if isinstance(live, list) and isinstance(applied, list) and applied and all(_item_key(field, x) for x in applied) and all(_item_key(field, x) for x in live):
        items = copy.deepcopy(live)
        for x in applied:
            k = _item_key(field, x)
            i = next((n for n, y in enumerate(items) if _item_key(field, y) == k), None)
            if i is None:
                items.append(copy.deepcopy(x))
            else:
                items[i] = merge(items[i], x)
        return items
    return copy.deepcopy(applied)


def _remove(obj: Any, path: Path) -> None:
    """Remove the field at ``path`` (and a keyed list item for a ``.`` path)."""
    if not path:
        return
    parent_path, last = path[:-1], path[-1]
    if last == ".":
        item_path, key = parent_path[:-1], parent_path[-1]
        lst = _get(obj, item_path)
        if isinstance(lst, list):
            field = item_path[-1][2:] if item_path else ""
            lst[:] = [x for x in lst if _item_key(field, x) != key]
        return
    parent = _get(obj, parent_path) if parent_path else obj
    if isinstance(parent, dict) and last.startswith("f:"):
        parent.pop(last[2:], None)


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in (obj.get("metadata") or {}).get("managedFields") or [] if isinstance(e, dict)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_entries(obj: dict[str, Any], owners: list[tuple[str, str, set[Path]]], api_version: str, times: dict[tuple[str, str], str]) -> None:
    entries = []
    for manager, op, paths in owners:
        if not paths:
            continue
        entries.append(
            {
                "manager": manager,
                "operation": op,
                "apiVersion": api_version,
                "time": times.get((manager, op)) or _now(),
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(paths),
            }
        )
    obj.setdefault("metadata", {})["managedFields"] = entries


def _owners(obj: dict[str, Any]) -> tuple[list[tuple[str, str, set[Path]]], dict[tuple[str, str], str]]:
    owners, times = [], {}
    for e in _entries(obj):
        key = (str(e.get("manager") or ""), str(e.get("operation") or "Update"))
        owners.append((key[0], key[1], from_fields_v1(e.get("fieldsV1"))))
        times[key] = str(e.get("time") or "")
    return owners, times


def apply(live: dict[str, Any] | None, applied: dict[str, Any], manager: str, *, force: bool, api_version: str) -> dict[str, Any]:
    """The object after ``manager`` applies ``applied`` to ``live`` (None: it is created)."""
    live = copy.deepcopy(live) if live is not None else {}
    owners, times = _owners(live)
    mine = fieldset(applied)
    conflicts = []
    for m, op, paths in owners:
        if m == manager and op == "Apply":
            continue
        for p in sorted(mine & paths):
            if p[-1] == ".":
                continue  # a keyed item itself: its fields decide
            if _get(applied, p) != _get(live, p) and _get(live, p) is not _MISSING:
                conflicts.append((m, p))
    if conflicts and not force:
        causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}" using {api_version}', "field": describe(p)} for m, p in conflicts]
        n = len(conflicts)
        detail = "; ".join(f'conflict with "{m}" using {api_version}: {describe(p)}' for m, p in conflicts) if n > 1 else f'conflict with "{conflicts[0][0]}" using {api_version}: {describe(conflicts[0][1])}'
        raise Conflict(f"Apply failed with {n} conflict{'s' if n > 1 else ''}: {detail}", details={"causes": causes})
    taken = {(m, p) for m, p in conflicts}  # force: the conflicting fields change hands
    previous = next((paths for m, op, paths in owners if m == manager and op == "Apply"), set())
    others = set().union(*(paths for m, op, paths in owners if not (m == manager and op == "Apply"))) if owners else set()
    out = live
    for p in sorted(previous - mine - others, key=len, reverse=True):
        _remove(out, p)
    out = merge(out, {k: v for k, v in applied.items() if k != "status"})
    new_owners = []
    for m, op, paths in owners:
        if m == manager and op == "Apply":
            continue
        kept = {p for p in paths if (m, p) not in taken}
        new_owners.append((m, op, kept))
    new_owners.append((manager, "Apply", mine))
    times[(manager, "Apply")] = _now()
    md = out.setdefault("metadata", {})
    md.pop("managedFields", None)
    _set_entries(out, new_owners, api_version, times)
    return out


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, *, api_version: str) -> None:
    """Give ``manager`` (operation Update) the fields ``new`` changed from ``old``, in place."""
    owners, times = _owners(old or {})
    before, after = fieldset(old or {}), fieldset(new)
    changed = {p for p in after if p not in before or _get(old or {}, p) != _get(new, p)}
    gone = before - after
    if not changed and not gone and owners:
        new.setdefault("metadata", {})["managedFields"] = (old or {}).get("metadata", {}).get("managedFields", [])
        return
    new_owners = []
    found = False
    for m, op, paths in owners:
        kept = (paths - changed - gone) & after
        if m == manager and op == "Update":
            kept |= changed
            found = True
            times[(m, op)] = _now()
        new_owners.append((m, op, kept))
    if not found:
        new_owners.append((manager, "Update", changed))
    _set_entries(new, new_owners, api_version, times)


__all__ = ["apply", "describe", "fieldset", "from_fields_v1", "merge", "record_update", "to_fields_v1"]
