"""The one retry policy (edgebus/backoff.py): exponential, capped, jittered downwards only."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebus.backoff import Backoff, delay_for, jittered, nominal_delay


def test_nominal_delays_double_up_to_the_cap() -> None:
    assert [nominal_delay(n, 0.5, 10.0) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert [nominal_delay(n, 1.0, 100.0, factor=3.0) for n in range(5)] == [1.0, 3.0, 9.0, 27.0, 81.0]


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    assert nominal_delay(10**9, 0.1, 5.0) == 5.0  # no OverflowError from 2 ** 10**9


def test_lenient_with_settings_that_make_no_sense() -> None:
    assert nominal_delay(3, 5.0, 1.0) == 5.0  # a cap below the first delay: the first delay
    assert nominal_delay(3, 0.0, 1.0) == 0.0
    assert nominal_delay(3, 1.0, 8.0, factor=1.0) == 1.0


def test_jitter_only_shortens_a_delay() -> None:
    rng = random.Random(7)
    got = [jittered(4.0, 0.5, rng) for _ in range(2000)]
    assert all(2.0 <= d <= 4.0 for d in got)
    assert min(got) < 2.2 and max(got) > 3.8  # spread over the whole band, not a constant
    assert len({round(d, 6) for d in got}) > 1000
    assert jittered(4.0, 0.0) == 4.0
    with pytest.raises(ValueError):
        jittered(1.0, 1.5)


def test_two_clients_failing_together_do_not_retry_in_lock_step() -> None:
    a, b = Backoff(0.1, 5.0, rng=random.Random(1)), Backoff(0.1, 5.0, rng=random.Random(2))
    assert [a.next() for _ in range(10)] != [b.next() for _ in range(10)]


def test_backoff_grows_caps_and_resets() -> None:
    b = Backoff(0.1, 1.0, jitter=0.0)
    assert [b.next() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    b.reset()
    assert b.next() == pytest.approx(0.1)
    j = Backoff(0.1, 1.0, rng=random.Random(3))
    for nominal in (0.1, 0.2, 0.4, 0.8, 1.0, 1.0):
        assert nominal / 2 <= j.next() <= nominal


@given(st.integers(0, 10_000), st.floats(0.001, 10.0), st.floats(0.001, 600.0), st.floats(0.0, 1.0))
def test_delay_for_is_within_the_jitter_band_of_the_nominal_delay(attempt: int, first: float, cap: float, jitter: float) -> None:
    nominal = nominal_delay(attempt, first, cap)
    assert nominal <= max(first, cap)
    d = delay_for(attempt, first, cap, jitter=jitter)
    assert nominal * (1 - jitter) - 1e-12 <= d <= nominal + 1e-12


def test_the_bus_layer_still_exports_the_same_backoff() -> None:
    from edgebus import bus

    assert bus.Backoff is Backoff
