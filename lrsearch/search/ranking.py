"""Answers to the seed's two questions: which rate scores highest, which learns soundest."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from lrsearch.models import COMPLETED, RUNNING

# "Healthy" is only asked of trials that also score well: an underfit rate has no gap.
HEALTHY_WITHIN = 0.05


class Ranked(Protocol):
    status: str
    lr: float
    best_val_acc: float | None
    final_val_acc: float | None
    final_acc_train: float | None


def gap(trial: Ranked) -> float | None:
    """Final train accuracy minus final validation accuracy."""
    if trial.final_acc_train is None or trial.final_val_acc is None:
        return None
    return trial.final_acc_train - trial.final_val_acc


def rank_by_accuracy(trials: Iterable[Ranked]) -> list[Ranked]:
    """Trials with epochs, best validation accuracy first; diverged and failed ones last."""

    def key(t: Ranked) -> tuple[int, float, float]:
        sound = t.status in (COMPLETED, RUNNING)
        return (0 if sound else 1, -(t.best_val_acc or 0.0), t.lr)

    return sorted(trials, key=key)


def best_trial(trials: Sequence[Ranked]) -> Ranked | None:
    """The highest validation accuracy among completed or running trials."""
    scored = [t for t in trials if t.status in (COMPLETED, RUNNING) and t.best_val_acc is not None]
    return max(scored, key=lambda t: (t.best_val_acc, -t.lr), default=None)


def healthiest_trial(trials: Sequence[Ranked]) -> Ranked | None:
    """Smallest train-validation gap among completed trials scoring near the best."""
    done = [t for t in trials if t.status == COMPLETED and gap(t) is not None]
    if not done:
        return None
    top = max(t.final_val_acc for t in done)
    close = [t for t in done if t.final_val_acc >= top - HEALTHY_WITHIN]
    return min(close, key=lambda t: (abs(gap(t)), -t.final_val_acc))
