"""The exactly-once decisions, without a server: metamanager's apply/skip of downstream
messages (by their sync version, against the bookkeeping committed with the object) and
edgehub's resume point after a cut (by the cloud's cursor and last forwarded message)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from edgebus import names
from edgebus.envelope import OP_DELETE, OP_INSERT, OP_UPDATE
from edgebus.objects import CONFIGMAPS, NODES
from services.edgehub import logic as hub
from services.metamanager import logic as mm
from services.metamanager.store import Item, MetaStore


def cm(name: str = "c", ns: str | None = "default", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


# -- metamanager: apply or skip -----------------------------------------------------------


def test_first_delivery_applies_and_a_redelivery_or_older_one_is_skipped() -> None:
    assert mm.decide(CONFIGMAPS, "c", "default", OP_INSERT, 3, cm(), None) == mm.Decision(mm.APPLY)
    stored = {"sync": 3}
    for seq in (3, 2, 1):  # the same message again (crash between commit and ack), or stale
        d = mm.decide(CONFIGMAPS, "c", "default", OP_UPDATE, seq, cm(), stored)
        assert d.action == mm.SKIP and "already applied" in d.reason
    assert mm.decide(CONFIGMAPS, "c", "default", OP_UPDATE, 4, cm(), stored).action == mm.APPLY
    assert mm.decide(CONFIGMAPS, "c", "default", OP_DELETE, 4, None, stored).action == mm.DELETE
    assert mm.decide(CONFIGMAPS, "c", "default", OP_DELETE, 3, None, stored).action == mm.SKIP


def test_a_stale_update_after_a_delete_does_not_bring_the_object_back() -> None:
    tombstone = {"sync": 5, "deleted": True}
    assert mm.decide(CONFIGMAPS, "c", "default", OP_UPDATE, 4, cm(), tombstone).action == mm.SKIP
    assert mm.decide(CONFIGMAPS, "c", "default", OP_INSERT, 6, cm(), tombstone).action == mm.APPLY


def test_messages_that_cannot_be_applied_are_rejected_not_skipped() -> None:
    def reason(op: str, seq: int, content: Any, name: str = "c", ns: str | None = "default", resource: Any = CONFIGMAPS) -> str:
        d = mm.decide(resource, name, ns, op, seq, content, None)
        assert d.action == mm.REJECT
        return d.reason

    assert "sync version" in reason(OP_UPDATE, 0, cm())
    assert "unsupported operation" in reason("patch", 1, cm())
    assert "must be an object" in reason(OP_UPDATE, 1, ["not", "an", "object"])
    assert "metadata.name" in reason(OP_UPDATE, 1, cm("other"))
    assert "metadata.namespace" in reason(OP_UPDATE, 1, cm(ns="kube-system"))
    assert "kind" in reason(OP_UPDATE, 1, {**cm(), "kind": "Secret"})
    node = {"kind": "Node", "metadata": {"name": "edge-1"}}
    assert mm.decide(NODES, "edge-1", None, OP_UPDATE, 1, node, None).action == mm.APPLY  # cluster-scoped: no namespace


deliveries = st.lists(st.tuples(st.integers(1, 12), st.sampled_from([OP_UPDATE, OP_DELETE])), max_size=40)


@settings(max_examples=60, deadline=None)
@given(deliveries, st.integers(1, 6))
def test_any_redelivery_order_applies_each_version_at_most_once_and_ends_at_the_newest(msgs: list[tuple[int, str]], batch: int) -> None:
    """Deliveries in any order, with duplicates, in batches: the store ends with the newest
    version, no version is applied twice and none older than one already applied."""
    # one version is one message: its operation is fixed by its sequence
    op_of: dict[int, str] = {}
    msgs = [(seq, op_of.setdefault(seq, op)) for seq, op in msgs]
    with tempfile.TemporaryDirectory() as d:
        store = MetaStore(Path(d) / "mm")
        try:
            applied = asyncio.run(_deliver(store, msgs, batch))
        finally:
            store.close()
    assert len(applied) == len(set(applied)), "a version applied twice"
    assert applied == sorted(applied), "an older version applied after a newer one"
    if msgs:
        newest = max(seq for seq, _ in msgs)
        assert applied and applied[-1] == newest


async def _deliver(store: MetaStore, msgs: list[tuple[int, str]], batch: int) -> list[int]:
    """What metamanager's apply_down does per fetched batch: decide against the committed
    bookkeeping, then commit the batch in one transaction."""
    key = CONFIGMAPS.lmdb_key("default", "c")
    for i in range(0, len(msgs), batch):
        items = []
        for seq, op in msgs[i : i + batch]:
            d = mm.decide(CONFIGMAPS, "c", "default", op, seq, cm(v=str(seq)) if op != OP_DELETE else None, store.meta_of(key))
            if d.action in (mm.APPLY, mm.DELETE):
                items.append(Item(CONFIGMAPS, "default", "c", d.action == mm.DELETE, seq, str(seq), cm(v=str(seq)) if d.action == mm.APPLY else None))
        before = (store.meta_of(key) or {}).get("sync", 0)
        await store.apply(items, received=len(items))
        assert (store.meta_of(key) or {}).get("sync", 0) == max([before, *(it.seq for it in items)])
        obj = store.objects.get(key)
        stored = store.meta_of(key)
        if stored is not None:
            assert (obj is None) == bool(stored["deleted"])
            if obj is not None:
                assert obj["data"]["v"] == str(stored["sync"])
    # what was applied, in commit order: the store's change log (one entry per applied version)
    applied = [int(e["sync"]) for _, e in store.changelog.items()]
    return applied


# -- edgehub: where forwarding resumes ----------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=6))
def test_after_any_cut_forwarding_resumes_with_the_next_message_exactly(n: int, cuts: list[tuple[int, bool]]) -> None:
    """The outbox holds 1..n. Forwarding publishes a message (with its outbox sequence)
    and then the cursor; a cut may fall between the two (the cursor lags one message) or
    after both. After each cut edgehub resumes after ``resume_point(cursor, epoch, last)``:
    the cloud gets every message exactly once, in order."""
    epoch = "2026-12-01T00:00:00Z"
    cloud: list[int] = []  # what the cloud's stream holds, in order
    last_headers: dict[str, str] | None = None  # the cloud stream's last message from this node
    cursor: dict[str, str] | None = None
    plan = iter(cuts)
    cut_at, before_cursor = next(plan, (None, False))
    while True:
        nxt = hub.resume_point(cursor, epoch, last_headers) + 1
        if nxt > n:
            break
        crashed = False
        for seq in range(nxt, n + 1):
            last_headers = hub.forward_headers({"Edgebus-Op": "update"}, "edge-1", epoch, seq)
            cloud.append(int(last_headers[names.HDR_UP_SEQ]))
            if seq == cut_at and before_cursor:
                crashed = True
                break
            cursor = hub.cursor_headers(epoch, seq)
            if seq == cut_at:
                crashed = True
                break
        if crashed:
            cut_at, before_cursor = next(plan, (None, False))
            continue
        break
    assert cloud == list(range(1, n + 1))


def test_a_new_outbox_starts_over_even_behind_an_old_cursor() -> None:
    old = hub.cursor_headers("old-epoch", 500)
    last = hub.forward_headers({}, "edge-1", "old-epoch", 500)
    assert hub.resume_point(old, "new-epoch", last) == 0
    assert hub.resume_point(old, "new-epoch", hub.forward_headers({}, "edge-1", "new-epoch", 3)) == 3
