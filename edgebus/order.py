"""The order in which a node made its upstream reports.

Every message the forwarder sends carries the node's outbox sequence (``Edgebus-Up-Seq``)
and the outbox's identity (``Edgebus-Up-Epoch``). Unlike the edge's clock, the sequence
never goes back, so "is this report newer than the one applied?" is answered with it:
within one outbox by the sequence, and a report from another outbox (the node's outbox was
re-created) is taken as newer. A report without the headers (none forwarded it) leaves
the question to the caller (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgebus import names


@dataclass(frozen=True, slots=True)
class UpOrder:
    epoch: str
    seq: int

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> UpOrder | None:
        try:
            seq = int(headers.get(names.HDR_UP_SEQ, ""))
        except ValueError:
            return None
        epoch = headers.get(names.HDR_UP_EPOCH, "")
        return cls(epoch, seq) if epoch and seq > 0 else None

    @classmethod
    def parse(cls, text: object) -> UpOrder | None:
        """The form :meth:`__str__` writes (``<seq>@<epoch>``), else None."""
        if not isinstance(text, str) or "@" not in text:
            return None
        seq, _, epoch = text.partition("@")
        try:
            return cls(epoch, int(seq)) if epoch else None
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.seq}@{self.epoch}"

    def newer_than(self, applied: UpOrder | None) -> bool | None:
        """True/False against the order of the report applied; None when that is unknown."""
        if applied is None:
            return None
        if applied.epoch != self.epoch:
            return True
        return self.seq > applied.seq
