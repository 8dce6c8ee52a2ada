"""Node liveness from the times the cloud observed heartbeats: per-node deadlines in a
heap, and timers for evictions that pods opted into (pure; the clock is passed in).

* :meth:`Liveness.observe` (one heap push, O(log n)) is all a heartbeat costs; nothing
  ever visits every node. :meth:`Liveness.expired` pops only the deadlines that are due.
* A node's deadline is ``observed + grace`` on the evaluator's own monotonic clock —
  never the edge's clock, never a timestamp compared across machines.
* :meth:`Liveness.hold` sets a floor: no node expires before ``now + grace``. The
  evaluator calls it when it starts or takes over, and whenever it may have missed
  heartbeats — its own process stalled (a gap between ticks), or its NATS server did not
  answer — so every node gets a full grace period after the cloud itself was away.
  Deadlines below the floor are pushed to it lazily, when they come due.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass(order=True, slots=True)
class _Deadline:
    at: float
    node: str = field(compare=False)
    gen: int = field(compare=False)


class Liveness:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.floor = 0.0
        self._heap: list[_Deadline] = []
        self._gen: dict[str, int] = {}
        self._deadline: dict[str, float] = {}
        #: heap entries popped or pushed since creation (tests pin bounded work with it)
        self.ops = 0

    def __len__(self) -> int:
        return len(self._deadline)

    def observe(self, node: str, now: float) -> None:
        """The cloud saw a heartbeat of ``node`` at ``now``: it is alive until now + grace."""
        gen = self._gen.get(node, 0) + 1
        self._gen[node] = gen
        self._deadline[node] = now + self.grace
        heapq.heappush(self._heap, _Deadline(now + self.grace, node, gen))
        self.ops += 1

    def forget(self, node: str) -> None:
        """Stop tracking ``node`` (deleted, or already NotReady)."""
        self._gen[node] = self._gen.get(node, 0) + 1
        self._deadline.pop(node, None)

    def hold(self, now: float) -> None:
        """No node may expire before ``now + grace`` (the cloud was away until ``now``)."""
        self.floor = max(self.floor, now + self.grace)

    def deadline(self, node: str) -> float | None:
        d = self._deadline.get(node)
        return None if d is None else max(d, self.floor)

    def next_due(self) -> float | None:
        while self._heap and self._gen.get(self._heap[0].node) != self._heap[0].gen:
            heapq.heappop(self._heap)  # superseded by a later observation
            self.ops += 1
        if not self._heap:
            return None
        return max(self._heap[0].at, self.floor)

    def expired(self, now: float) -> list[str]:
        """Nodes whose deadline passed (each reported once, until observed again)."""
        out: list[str] = []
        while self._heap and self._heap[0].at <= now:
            d = heapq.heappop(self._heap)
            self.ops += 1
            if self._gen.get(d.node) != d.gen:
                continue
            if self.floor > now:  # the cloud was away: wait for the floor, then look again
                heapq.heappush(self._heap, _Deadline(self.floor, d.node, d.gen))
                self.ops += 1
                continue
            self._deadline.pop(d.node, None)
            out.append(d.node)
        return out


@dataclass(order=True, slots=True)
class _Timer:
    at: float
    key: tuple[str, str] = field(compare=False)
    uid: str = field(compare=False)


class EvictionTimers:
    """Pods that tolerate a node's NoExecute taint for ``tolerationSeconds``: when their
    time is up. Each entry is checked again when due (the taint may be gone by then)."""

    def __init__(self) -> None:
        self._heap: list[_Timer] = []
        self._armed: dict[tuple[str, str], tuple[float, str]] = {}

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, key: tuple[str, str], uid: str, at: float) -> None:
        if self._armed.get(key) == (at, uid):
            return
        self._armed[key] = (at, uid)
        heapq.heappush(self._heap, _Timer(at, key, uid))

    def disarm(self, key: tuple[str, str]) -> None:
        self._armed.pop(key, None)

    def next_due(self) -> float | None:
        while self._heap and self._armed.get(self._heap[0].key) != (self._heap[0].at, self._heap[0].uid):
            heapq.heappop(self._heap)
        return self._heap[0].at if self._heap else None

    def due(self, now: float) -> list[tuple[tuple[str, str], str]]:
        out = []
        while self._heap and self._heap[0].at <= now:
            t = heapq.heappop(self._heap)
            if self._armed.get(t.key) != (t.at, t.uid):
                continue
            del self._armed[t.key]
            out.append((t.key, t.uid))
        return out
