"""Answers to the seed's two questions: which rate scores highest, which learns soundest.

Both are asked of the database (a search may have thousands of trials) and answered the
same way for the API, the pages and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from lrsearch.models import COMPLETED, RUNNING, Trial

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
    """Best validation accuracy first; diverged, failed and cancelled trials last."""

    def key(t: Ranked) -> tuple[int, float, float]:
        sound = t.status in (COMPLETED, RUNNING)
        return (0 if sound else 1, -(t.best_val_acc or 0.0), t.lr)

    return sorted(trials, key=key)


def best_trial_query(search_id: int, *columns) -> Select:
    """The highest best validation accuracy among completed or running trials (ties: lower lr).

    A diverged or failed trial is never the answer, whatever its numbers.
    """
    return (
        select(*(columns or (Trial.id,)))
        .where(
            Trial.search_id == search_id,
            Trial.status.in_((COMPLETED, RUNNING)),
            Trial.best_val_acc.is_not(None),
        )
        .order_by(Trial.best_val_acc.desc(), Trial.lr.asc())
        .limit(1)
    )


def healthiest_trial_query(search_id: int, *columns) -> Select:
    """The smallest train-validation gap among completed trials within HEALTHY_WITHIN of the
    best final validation accuracy (ties: the higher accuracy)."""
    done = (
        Trial.search_id == search_id,
        Trial.status == COMPLETED,
        Trial.final_acc_train.is_not(None),
        Trial.final_val_acc.is_not(None),
    )
    top = select(func.max(Trial.final_val_acc)).where(*done).scalar_subquery()
    return (
        select(*(columns or (Trial.id,)))
        .where(*done, Trial.final_val_acc >= top - HEALTHY_WITHIN)
        .order_by(
            func.abs(Trial.final_acc_train - Trial.final_val_acc),
            Trial.final_val_acc.desc(),
            Trial.lr.asc(),
        )
        .limit(1)
    )


def best_trial_id(session: Session, search_id: int) -> int | None:
    """The id of the trial with the highest validation accuracy, if any."""
    return session.execute(best_trial_query(search_id)).scalar()


def healthiest_trial_id(session: Session, search_id: int) -> int | None:
    """The id of the trial with the healthiest curve, if any."""
    return session.execute(healthiest_trial_query(search_id)).scalar()
