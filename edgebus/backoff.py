"""Exponential back-off with a cap and jitter: the one retry policy of edgebus.

Every loop that retries something that failed — a NATS connection, a pull consumer, a
start hook, a crashed task or process, a workload key, a NAK'd message, a device
reconnect — waits ``first * factor**n`` seconds (capped at ``cap``) before attempt
``n + 1``, minus a random share of up to ``jitter`` of it. The jitter only ever shortens a
wait (a delay lies in ``[d * (1 - jitter), d]``), so retries never come later than the
nominal schedule, and a fleet that lost its cloud at the same moment does not come back
in lock-step.

Two shapes, for the two kinds of loop:

- :class:`Backoff` for a loop that keeps its own state: ``next()`` after a failure,
  ``reset()`` after a success.
- :func:`delay_for` for a loop that already counts its failures (a process's restarts, a
  key's failures).

Kubernetes-visible delays that Kubernetes itself specifies without jitter (a container's
CrashLoopBackOff, a Job's pod back-off, the scheduler's pod back-off) are not retries of
edgebus and keep their exact schedules (``services/edged/status.py``,
``services/jobcontroller/logic.py``, ``services/scheduler/cache.py``).
"""

from __future__ import annotations

import math
import random

#: the share of a delay that jitter may take off (a delay ``d`` becomes one in ``[d/2, d]``)
JITTER = 0.5

_rng = random.Random()


def nominal_delay(attempt: int, first: float, cap: float, factor: float = 2.0) -> float:
    """``first * factor**attempt``, capped at ``cap`` (``attempt`` counts from 0). Lenient, as
    settings may be: a ``cap`` below ``first`` is ``first``, a ``first`` of 0 or less is 0."""
    if first <= 0:
        return 0.0
    cap = float(max(cap, first))
    if factor <= 1 or attempt <= 0:
        return float(first)
    if attempt >= math.log(cap / first, factor):  # no float overflow for large attempt counts
        return cap
    return min(first * factor**attempt, cap)


def jittered(d: float, jitter: float = JITTER, rng: random.Random | None = None) -> float:
    """``d`` less a random share of at most ``jitter`` of it."""
    if not 0 <= jitter <= 1:
        raise ValueError("jitter must be within [0, 1]")
    return d * (1.0 - jitter * (rng or _rng).random())


def delay_for(attempt: int, first: float, cap: float, *, factor: float = 2.0, jitter: float = JITTER, rng: random.Random | None = None) -> float:
    """The wait before retry ``attempt + 1`` (``attempt`` counts from 0): the nominal
    exponential delay, jittered."""
    return jittered(nominal_delay(attempt, first, cap, factor), jitter, rng)


class Backoff:
    """Exponential back-off with a cap and jitter; ``reset()`` after a success.

    ``next()`` returns the wait before the next attempt: ``first``, ``2 * first``, ...,
    ``cap``, each jittered (see the module docstring)."""

    def __init__(self, first: float = 0.1, cap: float = 5.0, *, factor: float = 2.0, jitter: float = JITTER, rng: random.Random | None = None) -> None:
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        self.first = first
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.rng = rng
        self.attempt = 0

    def next(self) -> float:
        d = delay_for(self.attempt, self.first, self.cap, factor=self.factor, jitter=self.jitter, rng=self.rng)
        self.attempt += 1
        return d

    def reset(self) -> None:
        self.attempt = 0
