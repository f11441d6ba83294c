"""The Master: rates in range, log-uniform, fixed by the seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrsearch.search.sampler import sample_learning_rates, trial_seed
from lrsearch.settings import format_lr


def test_random_rates_lie_in_range_and_repeat_with_the_seed():
    rates = sample_learning_rates(1e-4, 1e-2, 50, seed=7)
    assert len(rates) == 50
    assert all(1e-4 <= r <= 1e-2 for r in rates)
    assert rates == sample_learning_rates(1e-4, 1e-2, 50, seed=7)
    assert rates != sample_learning_rates(1e-4, 1e-2, 50, seed=8)


def test_random_rates_are_log_uniform():
    """Kolmogorov-Smirnov on the exponents of 20,000 draws against U(-4, -2)."""
    exponents = np.sort(np.log10(sample_learning_rates(1e-4, 1e-2, 20_000, seed=1)))
    expected = (exponents + 4) / 2  # the CDF of U(-4, -2)
    n = len(exponents)
    d = max(np.max(np.arange(1, n + 1) / n - expected), np.max(expected - np.arange(n) / n))
    assert d < 1.63 / math.sqrt(n)  # the 1 % critical value
    # and not uniform in the rate itself: half the draws fall below 1e-3
    assert 0.47 < np.mean(exponents < -3) < 0.53


def test_grid_is_log_spaced_and_spans_the_range():
    rates = sample_learning_rates(1e-4, 1e-2, 5, seed=0, sampler="grid")
    assert rates == pytest.approx([1e-4, 10**-3.5, 1e-3, 10**-2.5, 1e-2])
    assert sample_learning_rates(1e-4, 1e-2, 1, seed=0, sampler="grid") == pytest.approx([1e-3])


def test_rates_keep_full_precision_so_close_rates_never_collide():
    rates = sample_learning_rates(1.2e-4, 1.4e-4, 200, seed=3)
    assert len(set(rates)) == 200
    assert len({round(r, 4) for r in rates}) < 5  # what the seed's rounding would have done
    assert format_lr(0.000123456) == "0.000123"


@pytest.mark.parametrize("args", [(0, 1e-2), (1e-2, 1e-4), (1e-3, 1e-3), (-1, 1), (1e-4, math.inf)])
def test_bad_ranges_are_refused(args):
    with pytest.raises(ValueError):
        sample_learning_rates(*args, 3, seed=0)


def test_trial_seeds_are_fixed_and_distinct():
    seeds = [trial_seed(0, i) for i in range(100)]
    assert seeds == [trial_seed(0, i) for i in range(100)]
    assert len(set(seeds)) == 100
    assert seeds != [trial_seed(1, i) for i in range(100)]
