"""Early stopping by ASHA (asynchronous successive halving), as a pure rule.

A search with scheduler "asha" has rungs at grace_period x eta^k epochs (below its last
epoch); with several brackets, bracket b's rungs start eta^b times later, and a trial's
bracket is its index modulo the number of brackets (Hyperband's mix of early and late
stoppers). A trial that ends a rung's epoch goes on only if its metric is in the top 1/eta
of the values recorded at that rung so far, its own included; while fewer than eta are
recorded, only if it is the best so far (Optuna's successive-halving pruner does the
same). NaN never goes on.

The store applies `goes_on` inside the transaction that writes the rung's epoch, so two
workers reaching a rung together see each other (store/attempts.py); the rule itself
needs no database and sits below the store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SCHEDULERS = ("none", "asha")
# metric -> maximised: at the rung's epoch, or the trial's best up to it
METRICS = {"val_acc": True, "val_loss": False, "best_val_acc": True, "min_val_loss": False}


@dataclass(frozen=True)
class Rung:
    """What the store needs to decide a trial's fate at one rung."""

    epoch: int
    bracket: int
    brackets: int
    eta: int
    metric: str  # a key of METRICS

    @property
    def maximise(self) -> bool:
        return METRICS[self.metric]


def rungs(epochs: int, grace_period: int, eta: int, bracket: int = 0) -> list[int]:
    """The rung epochs of a bracket, below the last epoch."""
    found, rung = [], grace_period * eta**bracket
    while rung < epochs:
        found.append(rung)
        rung *= eta
    return found


def rung_at(
    epoch: int,
    index: int,
    *,
    scheduler: str,
    epochs: int,
    grace_period: int,
    reduction_factor: int,
    brackets: int,
    metric: str,
) -> Rung | None:
    """The rung that trial `index` reaches at `epoch`, if any."""
    if scheduler != "asha":
        return None
    bracket = index % brackets
    if epoch not in rungs(epochs, grace_period, reduction_factor, bracket):
        return None
    return Rung(epoch, bracket, brackets, reduction_factor, metric)


def goes_on(value: float, recorded: Sequence[float], eta: int, maximise: bool) -> bool:
    """Whether a trial whose metric at a rung is `value` goes on, given every value
    recorded at that rung (its own included)."""
    if value is None or not math.isfinite(value):
        return False
    sign = 1.0 if maximise else -1.0
    scores = sorted(
        (sign * v for v in recorded if v is not None and math.isfinite(v)), reverse=True
    )
    if not scores:
        return False
    keep = max(len(scores) // eta, 1)  # fewer than eta recorded: the best so far only
    return sign * value >= scores[keep - 1]
