"""The seed's Master: which learning rates a search tries."""

from __future__ import annotations

import math

import numpy as np
from sqlalchemy.orm import Session

from lrsearch import store
from lrsearch.models import Search
from lrsearch.settings import RANGE_TEST, SAMPLERS, SearchSpec


def sample_learning_rates(
    lr_min: float, lr_max: float, n: int, *, seed: int, sampler: str = "random"
) -> list[float]:
    """Draw `n` rates in [lr_min, lr_max]: log-uniform at random, or a log-spaced grid.

    Rates are full-precision floats, fixed by `seed` (the grid ignores it).
    """
    if not (0 < lr_min < lr_max) or not math.isfinite(lr_max):
        raise ValueError(f"need 0 < lr_min < lr_max, got {lr_min!r} and {lr_max!r}")
    if n < 1:
        raise ValueError(f"need at least one rate, got {n}")
    low, high = math.log10(lr_min), math.log10(lr_max)
    if sampler == "random":
        exponents = np.random.default_rng(seed).uniform(low, high, size=n)
    elif sampler == "grid":
        exponents = np.linspace(low, high, n) if n > 1 else np.array([(low + high) / 2])
    else:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    # Clip: 10**log10(x) may land one ulp outside the range.
    return [min(max(float(10.0**e), lr_min), lr_max) for e in exponents]


def trial_seed(search_seed: int, index: int) -> int:
    """The training seed of trial `index`, derived from the search's seed."""
    sequence = np.random.SeedSequence([search_seed, index])
    return int(sequence.generate_state(1, dtype=np.uint32)[0] >> 1)


def create_search(session: Session, spec: SearchSpec, parent_id: int | None = None) -> Search:
    """Store a search and its trials, the rates drawn now from the search's seed.

    A range test has one trial, stored at the rate it starts from.
    """
    if spec.kind == RANGE_TEST:
        rates = [spec.lr_min]
    else:
        rates = sample_learning_rates(
            spec.lr_min, spec.lr_max, spec.trials, seed=spec.seed, sampler=spec.sampler
        )
    trials = [(lr, trial_seed(spec.seed, index)) for index, lr in enumerate(rates)]
    return store.insert_search(session, spec, trials, parent_id)
