"""cloudhub as the identity authority: joins, link-certificate renewals, revocations.

* ``edgebus.hub.join`` (from the apiserver's HTTPS ``/edgebus/v1/join``): a bootstrap token
  (a Secret in ``kube-system``), the node's name, its identity nkey and a certificate request
  for its link key -> the Node object, the node's NATS credential (a JWT for its nkey, signed
  by the scoped node signer) and its link certificate.
* ``edgebus.hub.node.<node>.renew`` (from the node, over its link: the subject is its
  identity, nats-server lets no one else publish there) -> a new link certificate.
* ``edgebus.hub.renew`` (from the apiserver's HTTPS ``/edgebus/v1/renew``, for a node whose
  link certificate expired while it was offline) -> checked against the identity key recorded
  at join, then as above, within ``renew_window`` of the last certificate's expiry.
* Revocation: a node whose Node object is gone (``kubectl delete node``, ``edgebus node
  revoke``), and an identity replaced by a forced re-join, are revoked: the lease holder puts
  their nkeys in the account JWT's revocation list and pushes it to the servers, which close
  their connections at once and refuse them from then on.

Identity records live in the KV bucket ``edgebus-identity`` (one per node), so every replica
answers joins and renewals and a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import Counter

from edgebus import names, topology
from edgebus.bus import KV, Bus, BusError, CaughtUp, KeyExists, WrongRevision, ensure_consumer
from edgebus.envelope import pack, unpack
from edgebus.errors import AlreadyExists, BadRequest, Conflict, Forbidden, InvalidMessage, NotFound, RetryLater, Unauthorized
from edgebus.identity import join as joinproto
from edgebus.identity import pki, tokens
from edgebus.identity.cloud import CloudPki
from edgebus.objects import NODES, SECRETS
from edgebus.objectstore import DELETED, ObjectStore
from services.cloudhub import logic

log = logging.getLogger("edgebus.cloudhub.identity")

#: seconds between full sweeps for identities of deleted nodes (the watch sees deletions)
ORPHAN_SWEEP = 600.0
#: a record younger than this is never an orphan (its join is creating the Node)
ORPHAN_MIN_AGE = 60

JOINS = Counter("edgebus_cloudhub_joins_total", "Node join requests", ["outcome"])
RENEWALS = Counter("edgebus_cloudhub_renewals_total", "Link certificate renewals", ["path", "outcome"])
REVOCATIONS = Counter("edgebus_cloudhub_revocations_total", "Node identities revoked", ["reason"])
PUSHES = Counter("edgebus_cloudhub_account_pushes_total", "Account JWT updates pushed to the servers", ["outcome"])

#: clock skew tolerated on a signed renewal request
PROOF_SKEW = 300


@dataclass
class Record:
    node: str
    nkey: str
    not_after: int = 0
    joined_at: int = 0
    revoked_at: int = 0
    #: nkeys of earlier identities of this node (replaced by a forced re-join) -> when
    replaced: dict[str, int] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return pack({"node": self.node, "nkey": self.nkey, "notAfter": self.not_after, "joinedAt": self.joined_at, "revokedAt": self.revoked_at, "replaced": self.replaced})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Record:
        d = unpack(raw)
        if not isinstance(d, dict) or not isinstance(d.get("node"), str) or not isinstance(d.get("nkey"), str):
            raise InvalidMessage("not an identity record")
        return cls(d["node"], d["nkey"], int(d.get("notAfter") or 0), int(d.get("joinedAt") or 0), int(d.get("revokedAt") or 0), dict(d.get("replaced") or {}))


@dataclass
class IdentitySettings:
    link_lifetime: float
    renew_window: float
    leaf_urls: list[str]
    apiserver_url: str
    cloud_domain: str
    kv_replicas: int = 1


def revocations(records: list[Record], now: int, keep: float) -> dict[str, int]:
    """The account's revocation list: every revoked or replaced identity key, for as long as a
    link certificate issued before its revocation could still be valid (``keep`` seconds)."""
    out: dict[str, int] = {}
    for r in records:
        if r.revoked_at and now - r.revoked_at < keep:
            out[r.nkey] = r.revoked_at
        for k, t in r.replaced.items():
            if now - t < keep:
                out[k] = t
    return out


class Authority:
    def __init__(self, pki_: CloudPki, store: ObjectStore, bus: Bus, sysbus: Bus | None, cfg: IdentitySettings) -> None:
        self.pki = pki_
        self.store = store
        self.bus = bus
        self.sysbus = sysbus
        self.cfg = cfg
        self.kv = KV(bus, names.BUCKET_IDENTITY)
        self._ca: pki.CA | None = None
        self.pushed: dict[str, int] | None = None
        self.dirty = asyncio.Event()

    @property
    def ca(self) -> pki.CA:
        if self._ca is None:
            self._ca = self.pki.ca()
        return self._ca

    async def ensure(self) -> None:
        await self.kv.ensure(history=1, replicas=self.cfg.kv_replicas)

    # -- records --------------------------------------------------------------------------
    async def record(self, node: str) -> tuple[Record | None, int]:
        e = await self.kv.entry(names.encode_token(node))
        if e is None or e.deleted:
            return None, (e.revision if e else 0)
        try:
            return Record.from_bytes(e.value), e.revision
        except InvalidMessage:
            log.error("identity record of %s is unreadable; treating the node as unknown", node)
            return None, e.revision

    async def _save(self, r: Record, revision: int) -> None:
        key = names.encode_token(r.node)
        try:
            if revision:
                await self.kv.update(key, r.to_bytes(), revision)
            else:
                await self.kv.create(key, r.to_bytes())
        except (WrongRevision, KeyExists):
            raise Conflict(f"node {r.node}'s identity changed concurrently; try again") from None

    def _answer(self, node: str, cert_pem: bytes) -> dict[str, Any]:
        return {
            "node": node,
            "certificate": cert_pem.decode(),
            "ca": self.pki.ca_bundle().decode(),
            "cloudDomain": self.cfg.cloud_domain,
            "leafUrls": self.cfg.leaf_urls,
            "apiserver": self.cfg.apiserver_url,
            "linkLifetimeSeconds": self.cfg.link_lifetime,
            "renewWindowSeconds": self.cfg.renew_window,
            "tokenKeys": self.pki.token_keys(),
        }

    def _issue(self, node: str, csr: Any) -> tuple[bytes, int]:
        if not isinstance(csr, str):
            raise BadRequest("a certificate request (PEM) is required")
        try:
            cert = self.ca.issue_for_csr(csr.encode(), cn=f"system:node:{node}", lifetime=dt.timedelta(seconds=self.cfg.link_lifetime))
        except pki.PkiError as exc:
            raise BadRequest(f"invalid certificate request: {exc}") from None
        return pki.cert_pem(cert), int(cert.not_valid_after_utc.timestamp())

    # -- join -------------------------------------------------------------------------------
    async def join(self, c: Any) -> dict[str, Any]:
        if not isinstance(c, dict):
            raise BadRequest("join needs {token, node, nkey, csr}")
        node, nkey = c.get("node"), c.get("nkey")
        if not isinstance(node, str) or not names.is_dns1123_subdomain(node):
            JOINS.labels("invalid").inc()
            raise BadRequest(f"invalid node name {node!r}: a DNS-1123 subdomain (lowercase letters, digits, '-', '.')")
        try:
            names.node_domain(node)
        except names.InvalidName as exc:
            raise BadRequest(str(exc)) from None
        if not isinstance(nkey, str) or not nkey.startswith("U") or len(nkey) != 56:
            raise BadRequest("the node's identity key (an nkey user public key) is required")
        tok = await self._use_token(c.get("token"))
        old, rev = await self.record(node)
        now = int(time.time())
        if old is not None and not old.revoked_at and old.nkey != nkey and not c.get("force"):
            JOINS.labels("taken").inc()
            raise Conflict(f"node {node} has already joined (identity {old.nkey[:12]}…, since {tokens.rfc3339(dt.datetime.fromtimestamp(old.joined_at, dt.UTC))}); join with --force to replace it (the old credential stops working)")
        cert, not_after = self._issue(node, c.get("csr"))
        rec = Record(node, nkey, not_after, now)
        if old is not None:
            rec.replaced = dict(old.replaced)
            if old.nkey != nkey:
                rec.replaced[old.nkey] = now
        await self._save(rec, rev)
        await self._ensure_node(node, labels if isinstance(labels := c.get("labels"), dict) else {})
        await self._downstream_consumer(node, fresh=old is not None)

        self.dirty.set()
        JOINS.labels("forced" if old is not None and old.nkey != nkey and not old.revoked_at else "ok").inc()
        log.info("node %s joined with token %s (identity %s)", node, tok, nkey[:12])
        return {**self._answer(node, cert), "jwt": self.pki.node_jwt(node, nkey)}

    async def _use_token(self, raw: Any) -> str:
        try:
            t = tokens.Token.parse(str(raw or ""))
        except tokens.TokenError as exc:
            JOINS.labels("bad-token").inc()
            raise Unauthorized(str(exc)) from None
        for _ in range(10):
            try:
                obj = await self.store.get(SECRETS, tokens.NAMESPACE, t.secret_name())
            except NotFound:
                JOINS.labels("bad-token").inc()
                raise Unauthorized(f"invalid bootstrap token {t.id}: unknown, revoked or wrong secret") from None
            stored = tokens.StoredToken.from_secret(obj)
            if stored is None:
                raise Unauthorized(f"invalid bootstrap token {t.id}: unknown, revoked or wrong secret")
            try:
                stored.check(t.secret)
            except tokens.TokenError as exc:
                JOINS.labels("bad-token").inc()
                raise Unauthorized(str(exc)) from None
            if stored.uses is None:
                return t.id
            try:
                await self.store.update(SECRETS, tokens.consume(obj))
                return t.id
            except Conflict:
                continue  # another join used it at the same moment: look again
        raise RetryLater("the token kept changing; try again")

    async def _ensure_node(self, node: str, labels: dict[str, str]) -> None:
        try:
            await self.store.create(NODES, logic.new_node(node, {str(k): str(v) for k, v in labels.items()}, None))
        except AlreadyExists:
            pass

    async def _downstream_consumer(self, node: str, *, fresh: bool) -> None:
        """The node's durable consumer on ``EDGEBUS_DOWN``, made once here so that its links
        never make one (``fresh``: a node joining again starts from its whole desired state,
        it may have lost its copy). Not fatal: the node makes it itself when missing."""
        spec = replace(topology.down_consumer(node), domain=None)
        try:
            if fresh:
                await self._delete_downstream_consumer(node)
            await ensure_consumer(self.bus, spec)
        except BusError as exc:
            log.warning("downstream consumer of node %s not made (%s): the node makes it at its first link", node, exc)

    async def _delete_downstream_consumer(self, node: str) -> None:
        try:
            await self.bus.js().delete_consumer(names.STREAM_DOWN, names.down_consumer(node))
        except Exception as exc:  # noqa: BLE001 - none there, or the server is away: logged only
            log.debug("downstream consumer of node %s not deleted: %s", node, exc)

    # -- renewals -------------------------------------------------------------------------------
    async def renew_online(self, node: str, c: Any) -> dict[str, Any]:
        rec, rev = await self.record(node)
        if rec is None or rec.revoked_at:
            RENEWALS.labels("link", "refused").inc()
            raise Forbidden(f"node {node} is not joined (or was revoked): join again")
        cert, rec.not_after = self._issue(node, (c or {}).get("csr") if isinstance(c, dict) else None)
        await self._save(rec, rev)
        RENEWALS.labels("link", "ok").inc()
        log.info("renewed the link certificate of node %s (until %s)", node, tokens.rfc3339(dt.datetime.fromtimestamp(rec.not_after, dt.UTC)))
        return self._answer(node, cert)

    async def renew_offline(self, c: Any) -> dict[str, Any]:
        if not isinstance(c, dict) or not isinstance(c.get("node"), str) or not isinstance(c.get("csr"), str):
            raise BadRequest("renew needs {node, csr, time, proof}")
        node, csr = c["node"], c["csr"]
        rec, rev = await self.record(node)
        if rec is None or rec.revoked_at:
            RENEWALS.labels("expired", "refused").inc()
            raise Forbidden(f"node {node} is not joined (or was revoked): join again with a new token")
        t = c.get("time")
        now = time.time()
        if not isinstance(t, int) or abs(now - t) > PROOF_SKEW:
            raise Forbidden(f"renewal request of node {node} is not fresh (clocks more than {PROOF_SKEW}s apart?)")
        if not joinproto.check_renewal_proof(node, csr, t, rec.nkey, str(c.get("proof") or "")):
            RENEWALS.labels("expired", "bad-proof").inc()
            raise Forbidden(f"renewal request of node {node} is not signed by its identity key")
        if self.cfg.renew_window > 0 and now > rec.not_after + self.cfg.renew_window:
            RENEWALS.labels("expired", "too-late").inc()
            days = self.cfg.renew_window / 86400
            raise Forbidden(f"node {node}'s link certificate expired more than {days:g} days ago: join again with a new token")
        cert, rec.not_after = self._issue(node, csr)
        await self._save(rec, rev)
        RENEWALS.labels("expired", "ok").inc()
        log.info("renewed the expired link certificate of node %s", node)
        return self._answer(node, cert)

    # -- revocation (lease holder) -----------------------------------------------------------
    async def all_records(self) -> list[Record]:
        entries, _ = await self.kv.list()
        out = []
        for e in entries:
            try:
                out.append(Record.from_bytes(e.value))
            except InvalidMessage:
                continue
        return out

    async def revoke_orphans(self) -> int:
        """Revoke every identity whose Node object is gone. A record written in the last
        minute is left alone: a join saves it just before it creates the Node."""
        records = await self.all_records()
        nodes, _ = await self.store.list(NODES)
        present = {n["metadata"]["name"] for n in nodes}
        young = int(time.time()) - ORPHAN_MIN_AGE
        n = 0
        for r in records:
            if r.revoked_at or r.node in present or r.joined_at > young:
                continue
            await self.revoke(r.node, reason="node-deleted")
            n += 1
        return n

    async def revoke(self, node: str, *, reason: str) -> bool:
        for _ in range(10):
            rec, rev = await self.record(node)
            if rec is None or rec.revoked_at:
                return False
            rec.revoked_at = int(time.time())
            try:
                await self._save(rec, rev)
            except Conflict:
                continue
            REVOCATIONS.labels(reason).inc()
            log.warning("revoked the identity of node %s (%s)", node, reason)
            await self._delete_downstream_consumer(node)  # the node's position goes with it
            self.dirty.set()
            return True
        return False

    def account_jwt(self, records: list[Record]) -> tuple[str, dict[str, int]]:
        keep = self.cfg.link_lifetime + self.cfg.renew_window + 86400
        revs = revocations(records, int(time.time()), keep)
        return self.pki.account_jwt(revs, cloud_domain=self.cfg.cloud_domain), revs

    def resync(self) -> None:
        """Push again at the next chance (a server restarted and may hold an older account)."""
        self.pushed = None
        self.dirty.set()

    async def push(self, *, force: bool = False) -> bool:
        """Push the account JWT (with the current revocations) to the servers' resolvers."""
        records = await self.all_records()
        jwt, revs = self.account_jwt(records)
        if not force and revs == self.pushed:
            return False
        if self.sysbus is None:
            log.warning("no system-account credential: revocations are not pushed to the servers")
            return False
        try:
            await self.sysbus.request(names.CLAIMS_UPDATE_SUBJECT, jwt.encode(), timeout=5)
        except BusError as exc:
            PUSHES.labels("failed").inc()
            raise RetryLater(f"could not push the account update: {exc}") from None
        self.pushed = revs
        PUSHES.labels("ok").inc()
        log.info("pushed the account to the servers (%d revoked identities)", len(revs))
        return True

    async def run(self) -> None:
        """While holding the lease: revoke identities of deleted nodes as soon as they go,
        push the account after every change (and once at start)."""
        self.pushed = None
        watcher = asyncio.create_task(self._watch_nodes(), name="identity-node-watch")
        records = asyncio.create_task(self._watch_records(), name="identity-record-watch")
        try:
            await self.revoke_orphans()
            await self.push(force=True)
            while True:
                # deletions are seen by the watch; the full sweep (it lists every node and
                # record) is only a safety net, so it is rare whatever the fleet's size
                try:
                    await asyncio.wait_for(self.dirty.wait(), ORPHAN_SWEEP)
                except TimeoutError:
                    await self.revoke_orphans()
                self.dirty.clear()
                try:
                    await self.push()
                except RetryLater as exc:
                    log.warning("%s", exc)
                    self.dirty.set()
                    await asyncio.sleep(1.0)
        finally:
            for t in (watcher, records):
                t.cancel()
            await asyncio.gather(watcher, records, return_exceptions=True)

    async def _watch_nodes(self) -> None:
        async with aclosing(self.store.watch([NODES])) as it:
            async for ev in it:
                if ev.type == DELETED:
                    await self.revoke(ev.object["metadata"]["name"], reason="node-deleted")

    async def _watch_records(self) -> None:
        async with aclosing(self.kv.watch(">")) as it:
            async for e in it:
                if not isinstance(e, CaughtUp):
                    self.dirty.set()
