"""Reading container logs from the CRI log files (the Kubernetes format).

Each line the runtime writes is ``<RFC3339Nano time> <stdout|stderr> <P|F> <content>``;
``P`` marks a partial line continued by the next record, ``F`` the end of a line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class LogLine:
    time: str
    stream: str
    content: bytes

    def render(self, timestamps: bool) -> bytes:
        return (self.time.encode() + b" " if timestamps else b"") + self.content + b"\n"


def _parse(raw: bytes) -> tuple[str, str, bool, bytes] | None:
    parts = raw.split(b" ", 3)
    if len(parts) < 3:
        return None
    ts, stream, tag = parts[0].decode(errors="replace"), parts[1].decode(errors="replace"), parts[2]
    content = parts[3] if len(parts) > 3 else b""
    if stream not in ("stdout", "stderr") or tag not in (b"P", b"F"):
        return None
    return ts, stream, tag == b"P", content


def parse(data: bytes, pending: dict[str, tuple[str, bytes]] | None = None) -> tuple[list[LogLine], int]:
    """Complete lines in ``data`` (partial records joined); returns them and how many bytes
    were consumed (an unterminated last record is left for the next read). ``pending``
    carries partial lines (per stream) across calls."""
    pending = pending if pending is not None else {}
    out: list[LogLine] = []
    consumed = 0
    start = 0
    while True:
        nl = data.find(b"\n", start)
        if nl < 0:
            break
        rec = _parse(data[start:nl])
        start = nl + 1
        consumed = start
        if rec is None:
            continue
        ts, stream, partial, content = rec
        if stream in pending:
            first_ts, buf = pending.pop(stream)
            content, ts = buf + content, first_ts
        if partial:
            pending[stream] = (ts, content)
            continue
        out.append(LogLine(ts, stream, content))
    return out, consumed


def time_ns(ts: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time as the runtime writes it (UTC)."""
    main, _, frac = ts.rstrip("Z").partition(".")
    try:
        t = dt.datetime.strptime(main.rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    digits = "".join(ch for ch in frac if ch.isdigit())[:9].ljust(9, "0")
    return int(t.timestamp()) * 1_000_000_000 + int(digits or 0)


def _since_ok(line: LogLine, since_ns: int | None) -> bool:
    if not since_ns:
        return True
    t = time_ns(line.time)
    return t is None or t >= since_ns


def read(path: str | Path, *, tail: int | None = None, since_ns: int | None = None, timestamps: bool = False, limit_bytes: int = 4 << 20) -> tuple[bytes, int]:
    """The log's lines (the last ``tail``, newer than ``since_ns``), at most ``limit_bytes``
    (the end is kept); and the file offset where a follower continues."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return b"", 0
    window = max(limit_bytes * 4, 1 << 20)
    start = max(0, size - window)
    with open(p, "rb") as f:
        f.seek(start)
        data = f.read(size - start)
    if start:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
        skipped = size - start - len(data)
    else:
        skipped = 0
    lines, consumed = parse(data)
    lines = [ln for ln in lines if _since_ok(ln, since_ns)]
    if tail is not None and tail >= 0:
        lines = lines[-tail:] if tail else []
    out = b"".join(ln.render(timestamps) for ln in lines)
    if len(out) > limit_bytes:
        out = out[-limit_bytes:]
        nl = out.find(b"\n")
        out = out[nl + 1 :] if 0 <= nl < len(out) - 1 else out
    return out, start + skipped + consumed


class Follower:
    """Reads what is appended to a log file after ``offset``, one complete line at a time."""

    def __init__(self, path: str | Path, offset: int, *, timestamps: bool = False) -> None:
        self.path = Path(path)
        self.offset = offset
        self.timestamps = timestamps
        self._pending: dict[str, tuple[str, bytes]] = {}

    def poll(self, max_bytes: int = 256 << 10) -> bytes:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(max_bytes)
        except OSError:
            return b""
        if not data:
            return b""
        lines, consumed = parse(data, self._pending)
        if consumed == 0 and len(data) >= max_bytes:
            consumed = len(data)  # an over-long record: skip it rather than stall
        self.offset += consumed
        return b"".join(ln.render(self.timestamps) for ln in lines)
