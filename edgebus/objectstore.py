"""API objects in a NATS KV bucket: Kubernetes semantics over JetStream.

* One key per object (:func:`edgebus.names.object_key`); the value is the msgpack object
  *without* ``resourceVersion``: the resourceVersion is the KV revision of the entry.
* Writes are compare-and-set on the key's last revision, so concurrent writers get
  ``409 Conflict`` exactly like the Kubernetes API server.
* A delete writes a KV delete marker that carries the deleted object, so watchers receive
  a ``DELETED`` event with the object's last state.
* Each entry has an ``Edgebus-Op`` header (``create`` / ``update`` / ``delete``) that turns
  KV history into ``ADDED`` / ``MODIFIED`` / ``DELETED`` watch events.

The apiserver is an HTTP facade over this; cloud services that write status (cloudhub) use
it directly with :meth:`ObjectStore.mutate`.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import secrets as _secrets
import string
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from edgebus import names
from edgebus.bus import KV, Bus, CaughtUp, KeyExists, KVEntry, WrongRevision
from edgebus.envelope import pack, unpack
from edgebus.errors import AlreadyExists, BadRequest, Conflict, Forbidden, InvalidMessage, NotFound
from edgebus.objects import DEVICEMODELS, DEVICES, NAMESPACES, PODS, RESOURCES, SECRETS, SYSTEM_NAMESPACES, Resource, new_uid, now
from edgebus.objects.devices import check_against_model, device_model_name
from edgebus.objects.selectors import field_predicate, label_predicate
from edgebus.objects.validation import Causes, normalize_secret, validate

log = logging.getLogger("edgebus.objectstore")

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
#: Yielded once (with ``bookmarks=True``) when the initial objects have all been delivered.
BOOKMARK = "BOOKMARK"

#: Resources whose ``status`` is a subresource: the main PUT keeps the stored status.
STATUS_SUBRESOURCE = {"pods", "nodes", "namespaces", "devices"}
#: how many recently read or written entries an ObjectStore keeps (see ``_remember``)
RECENT_ENTRIES = 4096


@dataclass(slots=True)
class WatchEvent:
    type: str
    object: dict[str, Any]
    resource: Resource
    revision: int


def _decode(resource: Resource, e: KVEntry) -> dict[str, Any]:
    obj = unpack(e.value) if e.value else {}
    if not isinstance(obj, dict):
        raise InvalidMessage(f"stored value of {e.key} is not an object")
    obj.setdefault("apiVersion", resource.api_version)
    obj.setdefault("kind", resource.kind)
    obj.setdefault("metadata", {})["resourceVersion"] = str(e.revision)
    return obj


def _resource_of_key(key: str) -> Resource | None:
    return RESOURCES.get(key.split(".", 1)[0])


def _conflict(resource: Resource, name: str) -> Conflict:
    return Conflict(
        f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details={"name": name, "kind": resource.plural},
    )


def _not_found(resource: Resource, name: str) -> NotFound:
    return NotFound(f'{resource.plural} "{name}" not found', details={"name": name, "kind": resource.plural})


class ObjectStore:
    def __init__(self, bus: Bus, *, bucket: str = names.BUCKET_OBJECTS, replicas: int = 1) -> None:
        self.kv = KV(bus, bucket)
        self.replicas = replicas
        #: entries this store read or wrote last, by key. An update naming one of these
        #: revisions merges onto it without reading it again: a revision identifies one
        #: content, and the compare-and-set on it still decides, so this is never stale.
        self._recent: OrderedDict[str, KVEntry] = OrderedDict()

    def _remember(self, e: KVEntry) -> None:
        self._recent[e.key] = e
        self._recent.move_to_end(e.key)
        if len(self._recent) > RECENT_ENTRIES:
            self._recent.popitem(last=False)

    async def ensure(self) -> None:
        await self.kv.ensure(history=1, replicas=self.replicas)

    async def ensure_system_namespaces(self) -> None:
        for ns in SYSTEM_NAMESPACES:
            try:
                await self.create(NAMESPACES, {"metadata": {"name": ns}})
            except AlreadyExists:
                pass

    # -- reads ------------------------------------------------------------------------
    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        key = self._key(resource, namespace, name)
        e = await self.kv.get(key)
        if e is None:
            raise _not_found(resource, name)
        self._remember(e)
        return _decode(resource, e)

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Objects (sorted by namespace/name) and the list's resourceVersion."""
        lp, fp = label_predicate(label_selector), field_predicate(field_selector)
        entries, rev = await self.kv.list(names.object_key_filter(resource.plural, namespace if resource.namespaced else None))
        out = []
        for e in entries:
            try:
                obj = _decode(resource, e)
            except InvalidMessage as exc:
                log.warning("skipping %s: %s", e.key, exc)
                continue
            if lp(obj) and fp(obj):
                out.append(obj)
                rev = max(rev, e.revision)
        out.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"].get("name") or ""))
        return out, rev

    # -- writes -----------------------------------------------------------------------
    def _key(self, resource: Resource, namespace: str | None, name: str) -> str:
        try:
            return names.object_key(resource.plural, namespace if resource.namespaced else None, name)
        except names.InvalidName as exc:
            raise BadRequest(str(exc)) from None

    async def _require_namespace(self, resource: Resource, namespace: str | None) -> None:
        if not resource.namespaced:
            return
        if not namespace:
            raise BadRequest(f"{resource.kind} requires a namespace")
        ns = await self.kv.get(self._key(NAMESPACES, None, namespace))
        if ns is None:
            raise NotFound(f'namespaces "{namespace}" not found', details={"name": namespace, "kind": "namespaces"})
        if (unpack(ns.value).get("metadata") or {}).get("deletionTimestamp"):
            raise BadRequest(f'namespace "{namespace}" is being terminated')

    def _prepare(self, resource: Resource, obj: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        md = obj.setdefault("metadata", {}) if isinstance(obj, dict) else None
        if isinstance(md, dict):
            if not md.get("name") and isinstance(md.get("generateName"), str):
                suffix = "".join(_secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))
                md["name"] = md["generateName"] + suffix
            if resource.namespaced:
                md["namespace"] = md.get("namespace") or namespace or "default"
            else:
                md.pop("namespace", None)
        validate(resource, obj, namespace=namespace)
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        if resource is SECRETS:
            normalize_secret(obj)
        return obj

    async def _check_references(self, resource: Resource, obj: dict[str, Any]) -> None:
        """Checks across objects: a Device's model exists (same namespace) and accepts the
        device's properties, desired values and rules."""
        if resource is not DEVICES:
            return
        md = obj["metadata"]
        model_name = device_model_name(obj)
        if model_name is None:
            return  # validation already reported it
        e = await self.kv.get(self._key(DEVICEMODELS, md.get("namespace"), model_name))
        causes = Causes()
        if e is None or e.value is None or not e.value:
            causes.add("spec.deviceModelRef.name", "FieldValueNotFound", f'Not found: "{model_name}": no such DeviceModel in namespace {md.get("namespace")}')
        else:
            causes = check_against_model(obj, _decode(DEVICEMODELS, e))
        causes.raise_if_any(resource.kind, md.get("name", ""))

    async def create(self, resource: Resource, obj: dict[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        obj = self._prepare(resource, obj, namespace)
        md = obj["metadata"]
        ns = md.get("namespace")
        await self._require_namespace(resource, ns)
        await self._check_references(resource, obj)
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(k, None)
        md["uid"] = new_uid()
        md["creationTimestamp"] = now()
        md["generation"] = 1
        if resource is NAMESPACES:
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        key = self._key(resource, ns, md["name"])
        value = pack(obj)
        try:
            rev = await self.kv.create(key, value, headers={names.HDR_OP: "create", names.HDR_RESOURCE: resource.plural})
        except KeyExists:
            raise AlreadyExists(
                f'{resource.plural} "{md["name"]}" already exists', details={"name": md["name"], "kind": resource.plural}
            ) from None
        self._remember(KVEntry(key=key, value=value, revision=rev))
        md["resourceVersion"] = str(rev)
        return obj

    async def update(
        self, resource: Resource, obj: dict[str, Any], *, namespace: str | None = None, subresource: str | None = None
    ) -> dict[str, Any]:
        """PUT semantics: CAS on ``metadata.resourceVersion`` if given, else on the current one."""
        obj = self._prepare(resource, obj, namespace)
        md = obj["metadata"]
        if subresource is None:
            await self._check_references(resource, obj)
        key = self._key(resource, md.get("namespace"), md["name"])
        want_rv = md.get("resourceVersion")
        known = self._recent.get(key)
        if known is not None and want_rv not in (None, "") and str(want_rv) == str(known.revision):
            merged = self._merge_for_update(resource, _decode(resource, known), obj, subresource)
            try:
                return await self._cas(resource, key, merged, known.revision)
            except Conflict:
                self._recent.pop(key, None)  # changed or deleted since: answer from a fresh read
        cur = await self.kv.get(key)
        if cur is None:
            raise _not_found(resource, md["name"])
        self._remember(cur)
        current = _decode(resource, cur)
        if want_rv not in (None, "") and str(want_rv) != str(cur.revision):
            raise _conflict(resource, md["name"])
        merged = self._merge_for_update(resource, current, obj, subresource)
        return await self._cas(resource, key, merged, cur.revision)

    def _merge_for_update(
        self, resource: Resource, current: dict[str, Any], new: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        cmd = current.get("metadata") or {}
        if subresource == "status":
            out = copy.deepcopy(current)
            out["status"] = new.get("status", {})
            return out
        out = copy.deepcopy(new)
        md = out["metadata"]
        for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if k in cmd:
                md[k] = cmd[k]
            else:
                md.pop(k, None)
        if resource.plural in STATUS_SUBRESOURCE:
            if "status" in current:
                out["status"] = current["status"]
            else:
                out.pop("status", None)
        changed = {k: v for k, v in out.items() if k not in ("metadata", "status")} != {
            k: v for k, v in current.items() if k not in ("metadata", "status")
        }
        md["generation"] = int(cmd.get("generation") or 1) + (1 if changed else 0)
        return out

    async def _cas(self, resource: Resource, key: str, obj: dict[str, Any], revision: int) -> dict[str, Any]:
        md = obj["metadata"]
        md.pop("resourceVersion", None)
        value = pack(obj)
        try:
            rev = await self.kv.update(key, value, revision, headers={names.HDR_OP: "update", names.HDR_RESOURCE: resource.plural})
        except WrongRevision:
            raise _conflict(resource, md.get("name", "")) from None
        self._remember(KVEntry(key=key, value=value, revision=rev))
        md["resourceVersion"] = str(rev)
        return obj

    async def mutate(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        fn: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        retries: int = 20,
    ) -> dict[str, Any] | None:
        """Read-modify-write with CAS retries. ``fn`` returns the new object, or None to skip."""
        key = self._key(resource, namespace, name)
        for _ in range(retries):
            cur = await self.kv.get(key)
            if cur is None:
                raise _not_found(resource, name)
            obj = _decode(resource, cur)
            new = fn(copy.deepcopy(obj))
            if new is None:
                return None
            try:
                return await self._cas(resource, key, new, cur.revision)
            except Conflict:
                continue
        raise _conflict(resource, name)

    async def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
        uid: str | None = None,
    ) -> dict[str, Any]:
        """Delete an object. A pod bound to a node is deleted gracefully (see
        :func:`graceful_pod_delete`): it gets ``deletionTimestamp`` and stays until its
        node confirms its containers are gone; ``grace_period_seconds=0`` removes it at once."""
        if resource is NAMESPACES and name in SYSTEM_NAMESPACES:
            raise Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        key = self._key(resource, namespace, name)
        cur = await self.kv.get(key)
        if cur is None:
            raise _not_found(resource, name)
        if resource_version and str(resource_version) != str(cur.revision):
            raise _conflict(resource, name)
        obj = _decode(resource, cur)
        if uid and (obj.get("metadata") or {}).get("uid") != uid:
            raise _conflict(resource, name)
        if resource is PODS:
            marked = graceful_pod_delete(obj, grace_period_seconds)
            if marked is not None:
                if marked is obj:
                    return obj  # already terminating with that grace period or less
                return await self._cas(resource, key, marked, cur.revision)
        if resource is NAMESPACES:
            await self._delete_namespace_contents(name)
        obj["metadata"].setdefault("deletionTimestamp", now())
        body = copy.deepcopy(obj)
        body["metadata"].pop("resourceVersion", None)
        try:
            rev = await self.kv.delete(key, revision=cur.revision, value=pack(body), headers={names.HDR_OP: "delete", names.HDR_RESOURCE: resource.plural})
            self._recent.pop(key, None)
        except WrongRevision:
            raise _conflict(resource, name) from None
        obj["metadata"]["resourceVersion"] = str(rev)
        return obj

    @property
    def bus(self) -> Bus:
        return self.kv.bus

    async def _delete_namespace_contents(self, namespace: str) -> None:
        for r in RESOURCES.values():
            if not r.namespaced:
                continue
            items, _ = await self.list(r, namespace)
            for o in items:
                try:
                    await self.delete(r, namespace, o["metadata"]["name"])
                except (NotFound, Conflict):
                    pass

    # -- watch ------------------------------------------------------------------------
    async def watch(
        self,
        resources: list[Resource],
        namespace: str | None = None,
        *,
        from_revision: int | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        bookmarks: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        """Events for ``resources``: current objects as ADDED first (no ``from_revision``),
        or every change after ``from_revision``; then live changes, forever.

        With selectors, an object that stops matching yields DELETED and one that starts
        matching yields ADDED, as Kubernetes does. With ``bookmarks``, a ``BOOKMARK`` event
        (no object) marks the moment everything present at the start has been delivered.
        """
        lp, fp = label_predicate(label_selector), field_predicate(field_selector)
        filters = [names.object_key_filter(r.plural, namespace if r.namespaced else None) for r in resources]
        matched: set[str] = set()
        selective = bool(label_selector or field_selector)
        initial = from_revision is None
        async with aclosing(self.kv.watch(filters, from_revision=from_revision, last_per_subject=from_revision is None)) as it:
            async for e in it:
                if isinstance(e, CaughtUp):
                    initial = False
                    if bookmarks:
                        yield WatchEvent(BOOKMARK, {}, resources[0], e.last_seq)
                    continue
                resource = _resource_of_key(e.key)
                if resource is None:
                    continue
                try:
                    obj = _decode(resource, e)
                except InvalidMessage as exc:
                    log.warning("skipping %s: %s", e.key, exc)
                    continue
                if e.deleted:
                    if initial:
                        continue
                    if not selective or e.key in matched or (lp(obj) and fp(obj)):
                        matched.discard(e.key)
                        yield WatchEvent(DELETED, obj, resource, e.revision)
                    continue
                ok = lp(obj) and fp(obj)
                op = e.headers.get(names.HDR_OP, "update")
                if initial:
                    if ok:
                        matched.add(e.key)
                        yield WatchEvent(ADDED, obj, resource, e.revision)
                    continue
                if ok:
                    typ = ADDED if (op == "create" or (selective and e.key not in matched)) else MODIFIED
                    matched.add(e.key)
                    yield WatchEvent(typ, obj, resource, e.revision)
                elif e.key in matched:
                    matched.discard(e.key)
                    yield WatchEvent(DELETED, obj, resource, e.revision)


#: Grace period of a pod that does not set ``terminationGracePeriodSeconds``.
DEFAULT_GRACE_SECONDS = 30


def graceful_pod_delete(pod: dict[str, Any], grace_period_seconds: int | None) -> dict[str, Any] | None:
    """How deleting ``pod`` goes, as in Kubernetes: None = remove it now (not bound to a
    node, already finished, or ``grace_period_seconds == 0``); else the pod marked with
    ``deletionTimestamp`` (now + grace) and ``deletionGracePeriodSeconds`` for its node to
    stop it (``pod`` itself when it is already terminating with a grace period as short)."""
    if grace_period_seconds == 0:
        return None
    spec = pod.get("spec") or {}
    if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    grace = grace_period_seconds
    if grace is None:
        g = spec.get("terminationGracePeriodSeconds")
        grace = g if isinstance(g, int) and not isinstance(g, bool) and g >= 0 else DEFAULT_GRACE_SECONDS
    if grace == 0:
        grace = 1  # the node still has to stop the containers: at once, but not skipped
    md = pod.setdefault("metadata", {})
    cur = md.get("deletionGracePeriodSeconds")
    if md.get("deletionTimestamp") and isinstance(cur, int) and cur <= grace:
        return pod
    out = copy.deepcopy(pod)
    omd = out["metadata"]
    omd["deletionTimestamp"] = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)).strftime("%Y-%m-%dT%H:%M:%SZ")
    omd["deletionGracePeriodSeconds"] = grace
    return out
