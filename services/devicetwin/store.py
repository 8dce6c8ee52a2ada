"""devicetwin's LMDB tables.

* ``twins``   - ``<namespace>/<name>`` -> the twin (see :mod:`services.devicetwin.logic`)
* ``pending`` - ``<seq, zero-padded>`` -> a rule event not yet stored in the outbox; it is
  written in the same transaction as the twin change that fired it, and removed once the
  outbox (JetStream, de-duplicated by the event id) has it, so a crash in between loses
  nothing and duplicates nothing
* ``events``  - ``<seq, zero-padded>`` -> the last ``EVENTS_KEEP`` rule events (local log)
* ``state``   - ``seq``: the last event sequence

The environment is opened with ``sync=False``: a commit survives a process crash
(``kill -9``); after a power loss the last commits may be lost (twins are re-reported by
the mappers, desired values re-sent by the cloud).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebus.store import Store, Txn

EVENTS_KEEP = 10_000


def twin_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _seq_key(seq: int) -> str:
    return f"{seq:020d}"


class TwinStore:
    def __init__(self, path: str | Path, *, map_size: int = 64 << 20, max_map_size: int = 4 << 30) -> None:
        self.store = Store(path, map_size=map_size, max_map_size=max_map_size, sync=False)
        self.twins = self.store.table("twins")
        self.pending = self.store.table("pending")
        self.events = self.store.table("events")
        self.state = self.store.table("state")

    def close(self) -> None:
        self.store.close()

    def load(self) -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for k, v in self.twins.items():
            ns, _, name = k.partition("/")
            out[(ns, name)] = v
        return out

    def commit(self, key: tuple[str, str], twin: dict[str, Any] | None, events: list[dict[str, Any]] = ()) -> None:  # type: ignore[assignment]
        """Store a twin (None: delete it) and, in the same transaction, its new events."""

        def run(t: Txn) -> None:
            k = twin_key(*key)
            if twin is None:
                self.twins.delete(t, k)
            else:
                self.twins.put(t, k, twin)
            if events:
                seq = int(self.state.get("seq", t) or 0)
                for ev in events:
                    seq += 1
                    rec = {**ev, "seq": seq}
                    self.pending.put(t, _seq_key(seq), rec)
                    self.events.put(t, _seq_key(seq), rec)
                    if seq > EVENTS_KEEP:
                        self.events.delete(t, _seq_key(seq - EVENTS_KEEP))
                self.state.put(t, "seq", seq)

        self.store.write(run)

    def pending_events(self, limit: int = 256) -> list[dict[str, Any]]:
        return [v for _, v in self.pending.items_from("", limit)]

    def done(self, seqs: list[int]) -> None:
        if seqs:
            self.store.write(lambda t: [self.pending.delete(t, _seq_key(s)) for s in seqs])

    def recent_events(self, limit: int = 1000) -> list[dict[str, Any]]:
        seq = int(self.state.get("seq") or 0)
        return [v for _, v in self.events.items_from(_seq_key(max(seq - limit + 1, 0)), limit)]
