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

import builtins
import copy
import datetime as dt
import logging
import secrets as _secrets
import string
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from edgebus import names
from edgebus.bus import KV, Bus, CaughtUp, KeyExists, KVEntry, WrongRevision
from edgebus.envelope import pack, unpack
from edgebus.errors import AlreadyExists, ApiError, BadRequest, Conflict, Forbidden, InvalidMessage, NotFound
from edgebus.clusterips import ClusterIPs
from edgebus.objects import DEVICEMODELS, DEVICES, EVENTS, NAMESPACES, PODS, RESOURCES, SECRETS, SERVICES, SYSTEM_NAMESPACES, Resource, new_uid, now
from edgebus.objects import clusterip
from edgebus.objects import device_checks
from edgebus.objects.devices import device_model_name
from edgebus.objects.selectors import field_predicate, label_predicate
from edgebus.objects.pod_checks import check_pod_update
from edgebus.objects.checks import Causes
from edgebus.objects.validation import normalize_secret, validate
from edgebus.objects.workloads import apply_defaults, validate_update

log = logging.getLogger("edgebus.objectstore")

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
#: Yielded once (with ``bookmarks=True``) when the initial objects have all been delivered.
BOOKMARK = "BOOKMARK"

#: Resources whose ``status`` is a subresource: the main PUT keeps the stored status.
STATUS_SUBRESOURCE = {
    "pods", "nodes", "namespaces", "devices", "poddisruptionbudgets",
    "deployments", "replicasets", "daemonsets", "statefulsets", "jobs", "cronjobs", "nodegroups", "edgeapplications",
}  # fmt: skip
#: Resources with a ``scale`` subresource (``autoscaling/v1`` Scale of ``spec.replicas``).
SCALE_SUBRESOURCE = {"deployments", "replicasets", "statefulsets"}
#: Finalizers of ``DeleteOptions.propagationPolicy``: the garbage collector deletes the
#: dependents first (Foreground) or takes the owner reference off them (Orphan), then
#: removes the finalizer; an object is removed when its last finalizer goes.
FOREGROUND_FINALIZER = "foregroundDeletion"
ORPHAN_FINALIZER = "orphan"
PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")
#: Seconds an Event lives after its last write (Kubernetes' ``--event-ttl``, 1 h): events
#: carry a JetStream per-message TTL, so they expire without any sweep.
EVENT_TTL = 3600.0
#: Seconds the delete marker of an expired entry stays (watchers see it as DELETED).
EXPIRY_MARKER_TTL = 600.0
#: how many recently read or written entries an ObjectStore keeps (see ``_remember``)
RECENT_ENTRIES = 4096


@dataclass(slots=True)
class WatchEvent:
    type: str
    object: dict[str, Any]
    resource: Resource
    revision: int


#: the largest object the store takes (its msgpack encoding; etcd's default request limit)
MAX_OBJECT_BYTES = 1536 << 10

CORRUPT = Counter("edgebus_objectstore_corrupt_total", "Stored entries that could not be decoded (skipped in lists and watches)", ["resource"])


class CorruptObject(ApiError):
    """A stored entry that is not an object of its key (not msgpack, not a map, without the
    key's name, too large). Reads report it; a delete removes it."""

    code = 500
    reason = "StorageReadError"


class TooLarge(ApiError):
    code = 413
    reason = "RequestEntityTooLarge"


def _check(resource: Resource, e: KVEntry) -> dict[str, Any]:
    """The stored object, decoded and checked against its key - the one place entries are
    decoded (:class:`CorruptObject` when they do not hold an object of their key)."""
    if len(e.value) > MAX_OBJECT_BYTES:
        raise CorruptObject(f"stored value of {e.key} is {len(e.value)} bytes, more than an object may be ({MAX_OBJECT_BYTES})")
    try:
        obj = unpack(e.value)
    except InvalidMessage as exc:
        raise CorruptObject(f"stored value of {e.key} cannot be decoded: {exc}") from None
    if not isinstance(obj, dict):
        raise CorruptObject(f"stored value of {e.key} is not an object")
    md = obj.get("metadata")
    try:
        ref = names.parse_object_key(e.key)
    except names.InvalidName as exc:
        raise CorruptObject(str(exc)) from None
    if not isinstance(md, dict) or md.get("name") != ref.name or (resource.namespaced and md.get("namespace") != ref.namespace):
        raise CorruptObject(f"stored value of {e.key} is not the object {ref} (its metadata names another, or none)")
    return obj


def _tombstone(resource: Resource, key: str) -> dict[str, Any]:
    """The object a key names, with nothing else known about it."""
    try:
        ref = names.parse_object_key(key)
        md: dict[str, Any] = {"name": ref.name}
        if ref.namespace:
            md["namespace"] = ref.namespace
    except names.InvalidName:
        md = {"name": key}
    return {"apiVersion": resource.api_version, "kind": resource.kind, "metadata": md}


def _decode(resource: Resource, e: KVEntry) -> dict[str, Any]:
    if e.deleted:
        # a delete marker carries the deleted object, or nothing (a corrupt entry's delete)
        try:
            obj = _check(resource, e) if e.value else _tombstone(resource, e.key)
        except CorruptObject:
            obj = _tombstone(resource, e.key)
    else:
        try:
            obj = _check(resource, e)
        except CorruptObject:
            CORRUPT.labels(resource.plural).inc()
            raise
    obj.setdefault("apiVersion", resource.api_version)
    obj.setdefault("kind", resource.kind)
    obj.setdefault("metadata", {})["resourceVersion"] = str(e.revision)
    return obj


def _pack(obj: dict[str, Any]) -> bytes:
    """The stored form of an object: bounded (:data:`MAX_OBJECT_BYTES`)."""
    try:
        value = pack(obj)
    except (OverflowError, TypeError, ValueError) as exc:
        raise BadRequest(f"the object cannot be stored: {exc}") from None
    if len(value) > MAX_OBJECT_BYTES:
        raise TooLarge(f"the object is too large: {len(value)} bytes stored, at most {MAX_OBJECT_BYTES}")
    return value


def _resource_of_key(key: str) -> Resource | None:
    return RESOURCES.get(key.split(".", 1)[0])


#: tries of a delete without preconditions that keeps racing other writes
DELETE_ATTEMPTS = 10


def _conflict(resource: Resource, name: str) -> Conflict:
    return Conflict(
        f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        details={"name": name, "kind": resource.plural},
    )


def _not_found(resource: Resource, name: str) -> NotFound:
    return NotFound(f'{resource.plural} "{name}" not found', details={"name": name, "kind": resource.plural})


class ObjectStore:
    def __init__(
        self, bus: Bus, *, bucket: str = names.BUCKET_OBJECTS, replicas: int = 1, event_ttl: float = EVENT_TTL, service_cidr: str = clusterip.DEFAULT_SERVICE_CIDR
    ) -> None:
        self.kv = KV(bus, bucket)
        #: Services' cluster IPs (allocated on create, released on delete)
        self.cluster_ips = ClusterIPs(bus, service_cidr, replicas=replicas)
        self.replicas = replicas
        self.event_ttl = event_ttl
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
        await self.kv.ensure(history=1, replicas=self.replicas, marker_ttl=EXPIRY_MARKER_TTL)
        await self.cluster_ips.ensure()

    def _headers(self, resource: Resource, op: str) -> dict[str, str]:
        h = {names.HDR_OP: op, names.HDR_RESOURCE: resource.plural}
        if resource.plural == EVENTS.plural and self.event_ttl > 0:
            h[names.HDR_TTL] = f"{max(int(self.event_ttl), 1)}s"
        return h

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
        lp, fp = label_predicate(label_selector), field_predicate(field_selector, resource.plural)
        entries, rev = await self.kv.list(names.object_key_filter(resource.plural, namespace if resource.namespaced else None))
        out = []
        for e in entries:
            try:
                obj = _decode(resource, e)
            except CorruptObject as exc:
                log.warning("skipping %s: %s", e.key, exc.message)
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
        if (_decode(NAMESPACES, ns).get("metadata") or {}).get("deletionTimestamp"):
            raise BadRequest(f'namespace "{namespace}" is being terminated')

    def _prepare(self, resource: Resource, obj: dict[str, Any], namespace: str | None, *, uid: str | None = None) -> dict[str, Any]:
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
            if uid is not None:
                md["uid"] = uid
            apply_defaults(resource.plural, obj)
        validate(resource, obj, namespace=namespace)
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        if resource is SECRETS:
            normalize_secret(obj)
        return obj

    async def _check_references(self, resource: Resource, obj: dict[str, Any], warnings: builtins.list[str] | None) -> None:
        """edgebus's extra checks of devices and models (KubeEdge makes none of them, so they
        are warnings, never rejections): a Device's model exists (same namespace) and accepts
        the device's properties, desired values and rules (:mod:`edgebus.objects.device_checks`)."""
        if warnings is None or resource not in (DEVICES, DEVICEMODELS):
            return
        if resource is DEVICEMODELS:
            warnings.extend(device_checks.model_warnings(obj))
            return
        model_name = device_model_name(obj)
        model = None
        if model_name is not None:
            e = await self.kv.get(self._key(DEVICEMODELS, obj["metadata"].get("namespace"), model_name))
            model = _decode(DEVICEMODELS, e) if e is not None and e.value else None
        warnings.extend(device_checks.device_warnings(obj, model, model_found=model is not None))

    async def create(
        self, resource: Resource, obj: dict[str, Any], *, namespace: str | None = None, warnings: builtins.list[str] | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Create ``obj``; warnings about it (a Device whose model does not exist, ...) are
        appended to ``warnings`` when given. ``dry_run``: every check, nothing stored (the
        answer is what would have been created, without a ``resourceVersion``)."""
        uid = new_uid()
        obj = self._prepare(resource, obj, namespace, uid=uid)
        md = obj["metadata"]
        ns = md.get("namespace")
        await self._require_namespace(resource, ns)
        await self._check_references(resource, obj, warnings)
        for k in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            md.pop(k, None)
        md["uid"] = uid
        md["creationTimestamp"] = now()
        md["generation"] = 1
        if resource is NAMESPACES:
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        key = self._key(resource, ns, md["name"])
        if resource is SERVICES:
            causes = Causes()
            clusterip.check_requested(causes, obj, self.cluster_ips.net)
            causes.raise_if_any(resource.kind, md["name"])
        if dry_run:
            cur = await self.kv.get(key)
            if cur is not None and cur.value:
                raise AlreadyExists(f'{resource.plural} "{md["name"]}" already exists', details={"name": md["name"], "kind": resource.plural})
            if resource is SERVICES:
                want = clusterip.requested(obj)
                clusterip.assign(obj, (want or await self.cluster_ips.peek()) if clusterip.wants_ip(obj) else None)
            return obj
        ip = await self._allocate(obj) if resource is SERVICES else None
        value = _pack(obj)
        try:
            rev = await self.kv.create(key, value, headers=self._headers(resource, "create"))
        except KeyExists:
            if ip is not None:
                await self.cluster_ips.release(ip, uid)
            raise AlreadyExists(
                f'{resource.plural} "{md["name"]}" already exists', details={"name": md["name"], "kind": resource.plural}
            ) from None
        except BaseException:
            if ip is not None:
                await self.cluster_ips.release(ip, uid)
            raise
        self._remember(KVEntry(key=key, value=value, revision=rev))
        md["resourceVersion"] = str(rev)
        return obj

    async def _allocate(self, svc: dict[str, Any]) -> str | None:
        """Reserve the Service's cluster IP (the one it asks for, or a free one) and write it
        into the Service; None for headless and ExternalName Services."""
        if not clusterip.wants_ip(svc):
            clusterip.assign(svc, None)
            return None
        md = svc["metadata"]
        ip = await self.cluster_ips.reserve(md["namespace"], md["name"], md["uid"], self._service_exists, clusterip.requested(svc))
        clusterip.assign(svc, ip)
        return ip

    async def _service_exists(self, ns: str, name: str, uid: str) -> bool:
        try:
            e = await self.kv.get(self._key(SERVICES, ns, name))
        except BadRequest:
            return False
        if e is None or not e.value:
            return False
        try:
            return (_decode(SERVICES, e).get("metadata") or {}).get("uid") == uid
        except CorruptObject:
            return False

    async def _release(self, resource: Resource, obj: dict[str, Any]) -> None:
        if resource is SERVICES:
            ip = (obj.get("spec") or {}).get("clusterIP")
            if ip and ip != clusterip.HEADLESS:
                await self.cluster_ips.release(str(ip), str((obj.get("metadata") or {}).get("uid") or ""))

    async def update(
        self,
        resource: Resource,
        obj: dict[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        warnings: builtins.list[str] | None = None,
        dry_run: bool = False,
        before: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """PUT semantics: CAS on ``metadata.resourceVersion`` if given, else on the current one.
        ``dry_run``: every check, nothing stored (the answer keeps the current version).
        ``before(current, new)`` may change the new object once the current one is known
        (the managed fields of a PUT), without a read of its own."""
        obj = self._prepare(resource, obj, namespace)
        md = obj["metadata"]
        if subresource is None:
            await self._check_references(resource, obj, warnings)
        key = self._key(resource, md.get("namespace"), md["name"])
        want_rv = md.get("resourceVersion")
        known = self._recent.get(key)
        if known is not None and want_rv not in (None, "") and str(want_rv) == str(known.revision) and not dry_run:
            current = _decode(resource, known)
            if before is not None:
                before(current, obj)
            if subresource is None:
                validate_update(resource.plural, obj, current).raise_if_any(resource.kind, md["name"])
            merged = self._merge_for_update(resource, current, obj, subresource)
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
        if before is not None:
            before(current, obj)
        if subresource is None:
            validate_update(resource.plural, obj, current).raise_if_any(resource.kind, md["name"])
        merged = self._merge_for_update(resource, current, obj, subresource)
        if dry_run:
            merged["metadata"]["resourceVersion"] = str(cur.revision)
            return merged
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
        if resource is PODS:
            check_pod_update(current, out)
        if resource is SERVICES:
            causes = Causes()
            clusterip.keep_on_update(current, out, causes)
            causes.raise_if_any(resource.kind, str((out.get("metadata") or {}).get("name") or ""))
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
        value = _pack(obj)
        if md.get("deletionTimestamp") and not md.get("finalizers") and resource not in (PODS, NAMESPACES):
            # the last finalizer of an object being deleted is gone: remove it (same CAS)
            try:
                rev = await self.kv.delete(key, revision=revision, value=value, headers=self._headers(resource, "delete"))
            except WrongRevision:
                raise _conflict(resource, md.get("name", "")) from None
            self._recent.pop(key, None)
            md["resourceVersion"] = str(rev)
            await self._release(resource, obj)
            return obj
        try:
            rev = await self.kv.update(key, value, revision, headers=self._headers(resource, "update"))
        except WrongRevision:
            raise _conflict(resource, md.get("name", "")) from None
        self._remember(KVEntry(key=key, value=value, revision=rev))
        md["resourceVersion"] = str(rev)
        return obj

    async def replace_at(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        """Write ``obj`` exactly as given, if the object is still at the revision its
        ``metadata.resourceVersion`` names (409 ``Conflict`` otherwise): one round trip for
        a writer holding the latest version from a watch (no validation, no merge)."""
        md = obj.get("metadata") or {}
        try:
            revision = int(md.get("resourceVersion") or 0)
        except (TypeError, ValueError):
            revision = 0
        if revision <= 0:
            raise BadRequest("replace_at needs the object's resourceVersion")
        key = self._key(resource, md.get("namespace") if resource.namespaced else None, str(md.get("name") or ""))
        return await self._cas(resource, key, copy.deepcopy(obj), revision)

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
        propagation: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete an object. A pod bound to a node is deleted gracefully (see
        :func:`graceful_pod_delete`): it gets ``deletionTimestamp`` and stays until its
        node confirms its containers are gone; ``grace_period_seconds=0`` removes it at once.

        Other objects with ``metadata.finalizers`` (``propagation`` ``Foreground`` adds
        ``foregroundDeletion``, ``Orphan`` adds ``orphan``) get ``deletionTimestamp`` and
        stay until their finalizers are removed (by the garbage collector); without any
        they are removed at once (``Background``, the default: the garbage collector then
        deletes their dependents).

        Without preconditions (``resource_version``, ``uid``) a delete that raced another
        write is tried again on the newer object, as the Kubernetes API server does: only a
        precondition that no longer holds answers 409."""
        for attempt in range(DELETE_ATTEMPTS):
            try:
                return await self._delete_once(
                    resource, namespace, name, resource_version=resource_version, grace_period_seconds=grace_period_seconds, uid=uid, propagation=propagation, dry_run=dry_run
                )
            except Conflict:
                if resource_version or uid or attempt == DELETE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    async def _delete_once(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        resource_version: str | None,
        grace_period_seconds: int | None,
        uid: str | None,
        propagation: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        if resource is NAMESPACES and name in SYSTEM_NAMESPACES:
            raise Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        key = self._key(resource, namespace, name)
        cur = await self.kv.get(key)
        if cur is None:
            raise _not_found(resource, name)
        if resource_version and str(resource_version) != str(cur.revision):
            raise _conflict(resource, name)
        try:
            obj = _decode(resource, cur)
        except CorruptObject as exc:
            return await self._delete_corrupt(resource, key, cur, exc)
        if uid and (obj.get("metadata") or {}).get("uid") != uid:
            raise _conflict(resource, name)
        if dry_run:
            return obj
        if resource is PODS:
            marked = graceful_pod_delete(obj, grace_period_seconds)
            if marked is not None:
                if marked is obj:
                    return obj  # already terminating with that grace period or less
                return await self._cas(resource, key, marked, cur.revision)
        if resource is not PODS and resource is not NAMESPACES:
            marked = finalizing_delete(obj, propagation)
            if marked is not None:
                if marked is obj:
                    return obj  # already being deleted that way
                return await self._cas(resource, key, marked, cur.revision)
        if resource is NAMESPACES:
            await self._delete_namespace_contents(name)
        obj["metadata"].setdefault("deletionTimestamp", now())
        body = copy.deepcopy(obj)
        body["metadata"].pop("resourceVersion", None)
        try:
            rev = await self.kv.delete(key, revision=cur.revision, value=_pack(body), headers=self._headers(resource, "delete"))
            self._recent.pop(key, None)
        except WrongRevision:
            raise _conflict(resource, name) from None
        obj["metadata"]["resourceVersion"] = str(rev)
        await self._release(resource, obj)
        return obj

    async def _delete_corrupt(self, resource: Resource, key: str, cur: KVEntry, exc: CorruptObject) -> dict[str, Any]:
        """Remove an entry that holds no decodable object (nothing about it can be honoured:
        no grace period, no finalizers); the delete marker carries nothing."""
        try:
            rev = await self.kv.delete(key, revision=cur.revision, headers={names.HDR_OP: "delete", names.HDR_RESOURCE: resource.plural})
        except WrongRevision:
            raise _conflict(resource, key) from None
        self._recent.pop(key, None)
        log.warning("deleted %s, which held no object: %s", key, exc.message)
        obj = _tombstone(resource, key)
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
        resources: builtins.list[Resource],
        namespace: str | None = None,
        *,
        from_revision: int | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        bookmarks: bool = False,
    ) -> AsyncGenerator[WatchEvent, None]:
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
                except CorruptObject as exc:
                    log.warning("skipping %s: %s", e.key, exc.message)
                    continue
                if e.deleted:
                    if initial and e.key not in matched:
                        # the last message of a deleted key; but a delete that arrives while
                        # the initial objects are still coming, of one already given, is news
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


def finalizing_delete(obj: dict[str, Any], propagation: str | None) -> dict[str, Any] | None:
    """How deleting ``obj`` (not a pod) goes: None = remove it now; else the object marked
    with ``deletionTimestamp`` and the finalizers the propagation policy asks for (``obj``
    itself when nothing changes)."""
    md = obj.get("metadata") or {}
    finalizers = list(md.get("finalizers") or [])
    want = list(finalizers)
    if propagation == "Foreground":
        want = [f for f in want if f != ORPHAN_FINALIZER]
        if FOREGROUND_FINALIZER not in want:
            want.append(FOREGROUND_FINALIZER)
    elif propagation == "Orphan":
        want = [f for f in want if f != FOREGROUND_FINALIZER]
        if ORPHAN_FINALIZER not in want:
            want.append(ORPHAN_FINALIZER)
    elif propagation == "Background":
        want = [f for f in want if f not in (FOREGROUND_FINALIZER, ORPHAN_FINALIZER)]
    if not want:
        return None
    if md.get("deletionTimestamp") and want == finalizers:
        return obj
    out = copy.deepcopy(obj)
    omd = out["metadata"]
    omd["finalizers"] = want
    omd.setdefault("deletionTimestamp", now())
    omd.setdefault("deletionGracePeriodSeconds", 0)
    return out


#: Grace period of a pod that does not set ``terminationGracePeriodSeconds``.
DEFAULT_GRACE_SECONDS = 30
#: a deletionTimestamp is at most this far ahead
MAX_GRACE_SECONDS = 100 * 365 * 24 * 3600


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
    # (a grace period of centuries is a grace period of a century: datetime ends at year 9999)
    omd["deletionTimestamp"] = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=min(grace, MAX_GRACE_SECONDS))).strftime("%Y-%m-%dT%H:%M:%SZ")
    omd["deletionGracePeriodSeconds"] = grace
    return out
