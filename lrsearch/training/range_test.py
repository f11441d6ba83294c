"""The LR range test (Smith 2017, "Cyclical learning rates", as fastai's `lr_find`): one
network trained while its rate grows exponentially, batch by batch, and the range of
rates it suggests from the smoothed loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lrsearch.training.datasets import Dataset
from lrsearch.training.fpu import subnormals_flushed
from lrsearch.training.trainer import Hyperparameters, Trainer

SMOOTHING = 0.98  # the moving average's beta, as fastai's
STOP_FACTOR = 4.0  # stop once the smoothed loss exceeds this many times its minimum
FALL_STARTED = 0.1  # the lower end: where the loss has made this share of its fall
CLEAR_FALL = 0.1  # no suggestion unless the loss fell by at least this share of its start
MIN_ITERATIONS = 20


@dataclass(frozen=True)
class RangePoint:
    """One mini-batch of the test: its rate, its loss and the smoothed loss so far."""

    step: int  # 1-based
    lr: float
    loss: float
    smoothed: float


@dataclass(frozen=True)
class Suggestion:
    """The range a search should cover, and the rates it was read from."""

    lr_min: float
    lr_max: float
    steepest: float  # where the smoothed loss falls fastest, per decade of rate
    min_loss_lr: float  # where the smoothed loss is lowest


def rate_at(step: int, lr_min: float, lr_max: float, iterations: int) -> float:
    """The rate of 1-based `step`: lr_min at the first, lr_max at the last, geometric between."""
    share = (step - 1) / (iterations - 1)
    return min(lr_min * (lr_max / lr_min) ** share, lr_max)


def range_test(
    data: Dataset,
    hyper: Hyperparameters,
    lr_min: float,
    lr_max: float,
    iterations: int = 100,
    *,
    seed: int = 0,
) -> list[RangePoint]:
    """Train one network for up to `iterations` mini-batches (the training set reshuffled
    as often as needed), its rate growing from lr_min to lr_max; stop early once the
    smoothed loss exceeds STOP_FACTOR times its minimum, or the loss is not finite.

    The smoothed loss is a bias-corrected exponential moving average (beta SMOOTHING), as
    fastai's. Fixed by the seed, as a trial's training is.
    """
    if not (0 < lr_min < lr_max) or not math.isfinite(lr_max):
        raise ValueError(f"need 0 < lr_min < lr_max, got {lr_min!r} and {lr_max!r}")
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"need at least {MIN_ITERATIONS} iterations, got {iterations}")
    trainer = Trainer(data, hyper, lr_min, seed=seed)
    points: list[RangePoint] = []
    average, lowest = 0.0, math.inf
    with np.errstate(all="ignore"), subnormals_flushed():
        while len(points) < iterations:
            for x, y in trainer.batches():
                step = len(points) + 1
                lr = rate_at(step, lr_min, lr_max, iterations)
                trainer.optimizer.lr = lr
                loss_sum, _ = trainer.net.step_gradient(x, y, trainer.grad)
                loss = float(loss_sum) / len(y)
                average = SMOOTHING * average + (1 - SMOOTHING) * loss
                smoothed = average / (1 - SMOOTHING**step)
                points.append(RangePoint(step, lr, loss, smoothed))
                if not math.isfinite(smoothed) or smoothed > STOP_FACTOR * lowest:
                    return points
                lowest = min(lowest, smoothed)
                trainer.optimizer.step(trainer.grad)
                if step == iterations:
                    return points
    return points


def centred_median(losses: list[float], half_width: int) -> np.ndarray:
    """Each loss replaced by the median of those within half_width steps either side (fewer
    at the ends): smooth like the moving average, but with no lag and deaf to lone spikes."""
    values = np.asarray(losses, dtype=float)
    n = len(values)
    return np.array(
        [np.median(values[max(0, i - half_width) : i + half_width + 1]) for i in range(n)]
    )


def suggestion_curve(points: list[RangePoint]) -> tuple[list[RangePoint], np.ndarray]:
    """The points with a finite loss, and the curve the suggestion is read off: their
    losses' centred median over a tenth of the test (at least 5 batches)."""
    finite = [p for p in points if math.isfinite(p.loss)]
    return finite, centred_median([p.loss for p in finite], max(2, len(points) // 20))


def suggest_range(points: list[RangePoint]) -> Suggestion | None:
    """The suggested range, or None where the loss never clearly fell (the range too low, or
    too few iterations).

    Read off the losses' centred median (see README, "LR range test"), not the moving
    average: the average lags the rate by about beta / (1 - beta) = 49 batches, several
    decades of rate in a 100-batch test, so its fall and its minimum show late.
    Upper end: one decade below the rate of the minimum; there training is fastest, and
    just past it unstable. Lower end: where the loss has made FALL_STARTED of its fall from
    its start to its minimum: the fall is under way, below it the rate barely trains.
    Steepest: where the loss falls fastest per decade of rate, between the two.
    """
    finite, curve = suggestion_curve(points)
    if len(finite) < MIN_ITERATIONS // 2:
        return None
    decades = np.log10([p.lr for p in finite])
    lowest = int(np.argmin(curve))
    start, bottom = curve[0], curve[lowest]
    if lowest < 2 or bottom > (1 - CLEAR_FALL) * start:
        return None
    lower = int(np.argmax(curve[: lowest + 1] <= start - FALL_STARTED * (start - bottom)))
    slopes = np.gradient(curve[: lowest + 1], decades[: lowest + 1])
    steepest = int(np.argmin(slopes))
    upper_lr = finite[lowest].lr / 10
    lower_lr = min(finite[lower].lr, upper_lr / 10)
    return Suggestion(lower_lr, upper_lr, finite[steepest].lr, finite[lowest].lr)
