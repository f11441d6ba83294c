"""The ranking rule, once: which trials rank, in which order, and which is healthiest.

The seed's two questions: which rate scores highest (the best validation accuracy among
trials that completed or still run; ties: the lower rate), and which learns soundest (the
smallest train-validation gap among completed trials within HEALTHY_WITHIN of the best
final validation accuracy). The API, the pages and the CLI all take the answers from here;
the database answers them (a search may have thousands of trials).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import Row
from sqlalchemy.orm import Session

from lrsearch.models import COMPLETED, PRUNED, RUNNING
from lrsearch.store import reads

RANKED = (COMPLETED, RUNNING)  # a diverged, failed or cancelled trial is never an answer
# A pruned trial (stopped early by the scheduler) ranks after those, and is the highest
# accuracy only when no trial completed or runs; it is never the healthiest curve.
ANSWERS = (*RANKED, PRUNED)
TIERS = (RANKED, (PRUNED,))  # the ranking's order of statuses (see rank_key), the rest last
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


def rank_key(trial: Ranked) -> tuple[int, float, float]:
    """The trial's place in the ranking, as a key that sorts ascending: completed and running
    trials first, then pruned ones, then the rest; then the best validation accuracy; then
    the lower rate.

    A key depends on its trial alone, so a page that receives only the trials that changed
    keeps its order right (the API sends each trial's key).
    """
    place = 0 if trial.status in RANKED else 1 if trial.status == PRUNED else 2
    return (place, -(trial.best_val_acc or 0.0), trial.lr)


def rank_by_accuracy(trials: Iterable[Ranked]) -> list[Ranked]:
    """The trials in ranking order (see rank_key)."""
    return sorted(trials, key=rank_key)


def best_trial(session: Session, search_id: int) -> Row | None:
    """The trial with the highest validation accuracy, if any (reads.BRIEF_COLUMNS)."""
    return reads.best_trial(session, search_id, ANSWERS, TIERS)


def best_trial_id(session: Session, search_id: int) -> int | None:
    """The id of the trial with the highest validation accuracy, if any."""
    best = best_trial(session, search_id)
    return best.id if best else None


def healthiest_trial_id(session: Session, search_id: int) -> int | None:
    """The id of the trial with the healthiest curve, if any."""
    return reads.healthiest_trial_id(session, search_id, COMPLETED, HEALTHY_WITHIN)


def top_trial_ids(session: Session, search_id: int, k: int) -> list[int]:
    """The first k trials of the ranking that have finished an epoch."""
    return reads.top_trial_ids(session, search_id, k, TIERS)


def list_searches(
    session: Session,
    newest_first: bool = True,
    where: reads.SearchFilter = reads.EVERY_SEARCH,
    limit: int | None = None,
    offset: int = 0,
) -> list[reads.SearchListing]:
    """The searches (filtered, a page of them) with their totals and best trial, in a fixed
    number of statements."""
    return reads.list_searches(session, ANSWERS, TIERS, newest_first, where, limit, offset)
