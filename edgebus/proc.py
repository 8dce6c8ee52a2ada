"""Child-process helpers."""

from __future__ import annotations

import signal


def parent_death_signal() -> None:
    """In a child before exec (Linux): receive SIGTERM when the parent dies, so a process a
    test or the lab started never outlives it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
