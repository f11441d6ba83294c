"""JSON shapes of the API, declared once; pages get the same shapes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import url_for
from sqlalchemy import func, select

from lrsearch.extensions import db
from lrsearch.models import QUEUED, RUNNING, Epoch, Search, Trial, utcnow
from lrsearch.search import ranking

METRICS = ("loss", "acc_train", "val_loss", "acc_val")  # an epoch's numbers, as log.txt has them
# `attempt` last: a page drops a trial's points when a new attempt restarts it.
EPOCH_FIELDS = ("id", "trial_id", "epoch", *METRICS, "seconds", "attempt")


def when(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with a Z."""
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def number(value: float | None) -> float | None:
    """A float that strict JSON can carry: NaN and infinities become null."""
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class TrialTotals:
    """A search's trials in aggregate, as one GROUP BY gives them."""

    counts: dict[str, int]  # trials per status
    epochs_done: dict[str, int]  # finished epochs (current attempts) per status
    seconds: float  # training seconds of the current attempts

    def total_epochs(self) -> int:
        return sum(self.epochs_done.values())


def trial_totals(search_id: int) -> TrialTotals:
    """Counts, epochs and seconds of a search's trials, without loading them."""
    rows = db.session.execute(
        select(
            Trial.status,
            func.count(),
            func.coalesce(func.sum(Trial.epochs_done), 0),
            func.coalesce(func.sum(Trial.seconds), 0.0),
        )
        .where(Trial.search_id == search_id)
        .group_by(Trial.status)
    ).all()
    return TrialTotals(
        counts={r[0]: r[1] for r in rows},
        epochs_done={r[0]: r[2] for r in rows},
        seconds=sum(r[3] for r in rows),
    )


def search_summary(search: Search, totals: TrialTotals | None = None) -> dict[str, object]:
    """A search as the list and its own page show it."""
    totals = totals or trial_totals(search.id)
    done = totals.total_epochs()
    planned = search.n_trials * search.epochs
    best = db.session.execute(ranking.best_trial_query(search.id, *BRIEF_COLUMNS)).first()
    return {
        "id": search.id,
        **search.config(),
        "status": search.status,
        "cancel_requested": search.cancel_requested,
        "created_at": when(search.created_at),
        "started_at": when(search.started_at),
        "finished_at": when(search.finished_at),
        "epochs_done": done,
        "epochs_planned": planned,
        "progress": done / planned if planned else 1.0,
        "counts": totals.counts,
        "best": trial_brief(best) if best else None,
        "url": url_for("pages.search", search_id=search.id),
        "api_url": url_for("api.search_detail", search_id=search.id),
    }


BRIEF_COLUMNS = (Trial.id, Trial.index, Trial.lr, Trial.best_val_acc, Trial.best_epoch)


def trial_brief(trial) -> dict[str, object]:
    """Enough of a trial to name it in a summary."""
    return {
        "id": trial.id,
        "index": trial.index,
        "lr": trial.lr,
        "best_val_acc": number(trial.best_val_acc),
        "best_epoch": trial.best_epoch,
    }


def trial_row(trial: Trial) -> dict[str, object]:
    """One trial as the ranking table and status list show it."""
    return {
        "id": trial.id,
        "search_id": trial.search_id,
        "index": trial.index,
        "lr": trial.lr,
        "seed": trial.seed,
        "status": trial.status,
        "attempt": trial.attempt,
        "crashes": trial.crashes,
        "error": trial.error,
        "epochs_done": trial.epochs_done,
        "best_val_acc": number(trial.best_val_acc),
        "best_epoch": trial.best_epoch,
        "final_val_acc": number(trial.final_val_acc),
        "final_acc_train": number(trial.final_acc_train),
        "final_val_loss": number(trial.final_val_loss),
        "min_val_loss": number(trial.min_val_loss),
        "gap": number(ranking.gap(trial)),
        "seconds": number(trial.seconds),
        "started_at": when(trial.started_at),
        "finished_at": when(trial.finished_at),
        "updated_at": when(trial.updated_at),
        "url": url_for("pages.trial", trial_id=trial.id),
    }


def search_detail(search: Search) -> dict[str, object]:
    """A search with every trial, the ranking's two answers and an ETA."""
    return {**search_state(search), "trials": [trial_row(t) for t in search.trials]}


def search_state(search: Search) -> dict[str, object]:
    """The search's summary, the ranking's two answers, an ETA: no trial is loaded."""
    totals = trial_totals(search.id)
    return {
        "search": search_summary(search, totals),
        "best_trial_id": ranking.best_trial_id(db.session, search.id),
        "healthiest_trial_id": ranking.healthiest_trial_id(db.session, search.id),
        "eta_seconds": eta_seconds(search, totals),
        "server_time": when(utcnow()),
    }


def eta_seconds(search: Search, totals: TrialTotals) -> float | None:
    """Seconds left, from measured epoch times and the number of trials at once."""
    epochs = totals.total_epochs()
    if search.status not in (QUEUED, RUNNING) or not epochs or not totals.seconds:
        return None
    per_epoch = totals.seconds / epochs
    waiting = (QUEUED, RUNNING)
    left = sum(
        totals.counts.get(s, 0) * search.epochs - totals.epochs_done.get(s, 0) for s in waiting
    )
    parallel = max(1, min(search.workers, totals.counts.get(RUNNING, 0)))
    return max(left, 0) * per_epoch / parallel


def epochs_after(
    search_id: int, after: int, limit: int = 200_000, trial_ids: Sequence[int] | None = None
) -> dict[str, object]:
    """Epochs of the trials' current attempts with id > after, column by column.

    `trial_ids` keeps only those trials' epochs. `last_id` is where to go on from: the last
    row's id while rows are left (`complete` false), then the newest epoch id there was,
    whichever trial's. So a page that draws only some trials' curves fetches them this way
    and polls on from there, skipping the others' epochs until it asks for them whole.
    """
    # Read first, and the rows bounded by it: each statement may see newer commits.
    newest = max(after, db.session.execute(select(func.max(Epoch.id))).scalar() or 0)
    query = (
        select(*(getattr(Epoch, f) for f in EPOCH_FIELDS))
        .join(Trial, (Trial.id == Epoch.trial_id) & (Trial.attempt == Epoch.attempt))
        .where(Trial.search_id == search_id, Epoch.id > after, Epoch.id <= newest)
        .order_by(Epoch.id)
        .limit(limit)
    )
    if trial_ids is not None:
        query = query.where(Epoch.trial_id.in_(trial_ids))
    rows = db.session.execute(query).all()
    transposed = zip(*rows, strict=True) if rows else ([] for _ in EPOCH_FIELDS)
    columns = {f: _finite(list(column)) for f, column in zip(EPOCH_FIELDS, transposed, strict=True)}
    complete = len(rows) < limit
    return {
        "after": after,
        "last_id": newest if complete else rows[-1][0],
        "complete": complete,
        "epochs": columns,
    }


def _finite(column: list) -> list:
    """The column, with any NaN or infinity (never written, but JSON must stay strict) as null."""
    if all(map(math.isfinite, column)):
        return column
    return [number(v) for v in column]


def trials_changed(search_id: int, since: datetime) -> list[dict[str, object]]:
    """Trials of the search whose row changed at or after `since`."""
    trials = db.session.execute(
        select(Trial)
        .where(Trial.search_id == search_id, Trial.updated_at >= since)
        .order_by(Trial.index)
    ).scalars()
    return [trial_row(t) for t in trials]


def poll_window(since: datetime | None) -> datetime:
    """Where a poll's trial changes start: a little before the client's last look."""
    margin = timedelta(seconds=2)
    return datetime.min if since is None else max(since, datetime.min + margin) - margin
