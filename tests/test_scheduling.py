"""The ASHA rule on given values, and where the rungs lie."""

from __future__ import annotations

import math

import pytest

from lrsearch.scheduling import Rung, goes_on, rung_at, rungs

NAN = math.nan


def test_rungs_lie_at_grace_times_powers_of_eta_below_the_last_epoch():
    assert rungs(27, 1, 3) == [1, 3, 9]
    assert rungs(28, 1, 3) == [1, 3, 9, 27]
    assert rungs(20, 2, 2) == [2, 4, 8, 16]
    assert rungs(27, 1, 3, bracket=1) == [3, 9]  # a later bracket starts eta times later
    assert rungs(27, 1, 3, bracket=3) == []
    assert rungs(1, 1, 3) == []


def test_a_trials_bracket_is_its_index_modulo_the_brackets():
    schedule = {"scheduler": "asha", "epochs": 27, "grace_period": 1, "reduction_factor": 3,
                "metric": "val_acc"}  # fmt: skip
    assert rung_at(1, 0, brackets=2, **schedule) == Rung(1, 0, 2, 3, "val_acc")
    assert rung_at(1, 1, brackets=2, **schedule) is None  # bracket 1's first rung is 3
    assert rung_at(3, 1, brackets=2, **schedule) == Rung(3, 1, 2, 3, "val_acc")
    assert rung_at(2, 0, brackets=1, **schedule) is None
    assert rung_at(1, 0, brackets=1, **{**schedule, "scheduler": "none"}) is None


@pytest.mark.parametrize(
    ("value", "recorded", "eta", "maximise", "expected"),
    [
        (0.9, [0.9], 3, True, True),  # alone: the best so far
        (0.5, [0.9, 0.5], 3, True, False),  # fewer than eta: only the best goes on
        (0.9, [0.5, 0.9], 3, True, True),
        (0.9, [0.9, 0.9], 3, True, True),  # a tie with the best is the best
        (0.7, [0.9, 0.8, 0.7], 3, True, False),  # 3 recorded: the top 1
        (0.9, [0.9, 0.8, 0.7], 3, True, True),
        (0.8, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 3, True, True),  # 6 recorded: the top 2
        (0.7, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], 3, True, False),
        (0.8, [0.9, 0.8, 0.8, 0.6, 0.5, 0.4], 3, True, True),  # ties at the edge go on
        (0.3, [0.3, 1.2, 0.9], 3, False, True),  # val_loss: the lowest is the best
        (1.2, [0.3, 1.2, 0.9], 3, False, False),
        (NAN, [NAN], 3, True, False),  # NaN never goes on
        (NAN, [NAN], 3, False, False),
        (0.5, [NAN, 0.5], 3, True, True),  # another's NaN counts for nothing
        (0.5, [0.9, 0.5], 2, True, False),  # 2 recorded, eta 2: the top 1
        (0.9, [0.9, 0.5, 0.6, 0.1], 2, True, True),  # 4 recorded, eta 2: the top 2
        (0.6, [0.9, 0.5, 0.6, 0.1], 2, True, True),
        (0.5, [0.9, 0.5, 0.6, 0.1], 2, True, False),
    ],
)
def test_the_rung_rule(value, recorded, eta, maximise, expected):
    assert goes_on(value, recorded, eta, maximise) is expected
