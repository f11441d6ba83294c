"""JSON shapes of the API, declared once; pages get the same shapes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from flask import url_for
from sqlalchemy import func, select

from lrsearch.extensions import db
from lrsearch.models import RUNNING, Epoch, Search, Trial, utcnow
from lrsearch.search import ranking

# `attempt` last: a page drops a trial's points when a new attempt restarts it.
EPOCH_FIELDS = (
    "id",
    "trial_id",
    "epoch",
    "loss",
    "acc_train",
    "val_loss",
    "acc_val",
    "seconds",
    "attempt",
)


def when(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with a Z."""
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def number(value: float | None) -> float | None:
    """A float that strict JSON can carry: NaN and infinities become null."""
    return value if value is not None and math.isfinite(value) else None


def search_summary(search: Search, trials: Sequence[Trial] | None = None) -> dict[str, object]:
    """A search as the list and its own page show it."""
    trials = search.trials if trials is None else trials
    done = sum(t.epochs_done for t in trials)
    planned = search.n_trials * search.epochs
    best = ranking.best_trial(trials)
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
        "counts": _counts(trials),
        "best": trial_brief(best) if best else None,
        "url": url_for("pages.search", search_id=search.id),
        "api_url": url_for("api.search_detail", search_id=search.id),
    }


def _counts(trials: Sequence[Trial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    return counts


def trial_brief(trial: Trial) -> dict[str, object]:
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
    trials = search.trials
    best, healthy = ranking.best_trial(trials), ranking.healthiest_trial(trials)
    return {
        "search": search_summary(search, trials),
        "trials": [trial_row(t) for t in trials],
        "best_trial_id": best.id if best else None,
        "healthiest_trial_id": healthy.id if healthy else None,
        "eta_seconds": eta_seconds(search, trials),
        "server_time": when(utcnow()),
    }


def eta_seconds(search: Search, trials: Sequence[Trial]) -> float | None:
    """Seconds left, from measured epoch times and the number of trials at once."""
    if search.status not in ("queued", RUNNING):
        return None
    done = [t for t in trials if t.epochs_done]
    measured = sum(t.seconds for t in done)
    epochs = sum(t.epochs_done for t in done)
    if not epochs:
        return None
    per_epoch = measured / epochs
    left = sum(
        max(search.epochs - t.epochs_done, 0) for t in trials if t.status in ("queued", RUNNING)
    )
    parallel = max(1, min(search.workers, len([t for t in trials if t.status == RUNNING]) or 1))
    return left * per_epoch / parallel


def epochs_after(search_id: int, after: int, limit: int = 200_000) -> dict[str, object]:
    """Epochs of the trials' current attempts with id > after, column by column."""
    rows = db.session.execute(
        select(*(getattr(Epoch, f) for f in EPOCH_FIELDS))
        .join(Trial, (Trial.id == Epoch.trial_id) & (Trial.attempt == Epoch.attempt))
        .where(Trial.search_id == search_id, Epoch.id > after)
        .order_by(Epoch.id)
        .limit(limit)
    ).all()
    columns = {
        f: [number(r[i]) if i >= 3 else r[i] for r in rows] for i, f in enumerate(EPOCH_FIELDS)
    }
    return {
        "after": after,
        "last_id": rows[-1][0] if rows else after,
        "complete": len(rows) < limit,
        "epochs": columns,
    }


def trials_changed(search_id: int, since: datetime) -> list[dict[str, object]]:
    """Trials of the search whose row changed at or after `since`."""
    trials = db.session.execute(
        select(Trial)
        .where(Trial.search_id == search_id, Trial.updated_at >= since)
        .order_by(Trial.index)
    ).scalars()
    return [trial_row(t) for t in trials]


def epochs_done(search_id: int) -> int:
    """Finished epochs of the search's current attempts."""
    return db.session.execute(
        select(func.coalesce(func.sum(Trial.epochs_done), 0)).where(Trial.search_id == search_id)
    ).scalar_one()


def poll_window(since: datetime | None) -> datetime:
    """Where a poll's trial changes start: a little before the client's last look."""
    margin = timedelta(seconds=2)
    return datetime.min if since is None else max(since, datetime.min + margin) - margin
