"""JSON shapes of the API, declared once; pages get the same shapes.

No queries: rows and values in, dicts out (and URLs); what to read is the views' and
store.reads' to say.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from flask import url_for

from lrsearch.models import (
    PRUNED,
    QUEUED,
    RUNNING,
    Epoch,
    Search,
    Trial,
    status_detail,
    status_note,
    utcnow,
)
from lrsearch.search import ranking
from lrsearch.store.reads import EPOCH_FIELDS, EpochColumns, SearchListing, TrialTotals


def when(value: datetime | None) -> str | None:
    """A stored (naive UTC) time as ISO 8601 with a Z."""
    return value.isoformat(timespec="milliseconds") + "Z" if value else None


def number(value: float | None) -> float | None:
    """A float that strict JSON can carry: NaN and infinities become null."""
    return value if value is not None and math.isfinite(value) else None


def runner(record) -> dict[str, object]:
    """A runner as it last reported itself (store.runners)."""
    return {
        "name": record.name,
        "executor": record.executor,
        "address": record.address or None,
        "workers": record.workers,
        "dashboard_url": record.dashboard_url,
        "problem": record.problem,
        "started_at": when(record.started_at),
        "heartbeat_at": when(record.heartbeat_at),
    }


def search_summary(search: Search, totals: TrialTotals, best) -> dict[str, object]:
    """A search as the list and its own page show it; `best` its best trial's brief row."""
    done = totals.total_epochs()
    # A pruned trial will run no more epochs: the plan counts what it ran, not its maximum.
    pruned = totals.counts.get(PRUNED, 0)
    planned = (search.n_trials - pruned) * search.epochs + totals.epochs_done.get(PRUNED, 0)
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
        "epochs_by_status": totals.epochs_done,
        "status_note": status_note(search.status, totals.counts),
        "status_detail": status_detail(search.status, totals.counts),
        "best": trial_brief(best) if best else None,
        "parent_id": search.parent_id,
        "url": url_for("pages.search", search_id=search.id),
        "api_url": url_for("api.search_detail", search_id=search.id),
    }


def errors(summary: tuple[list[tuple[str, int]], int]) -> dict[str, object]:
    """The failed trials' distinct errors (store.trial_errors)."""
    shown, more = summary
    return {"errors": [{"message": m, "trials": n} for m, n in shown], "more_errors": more}


def search_row(search: Search) -> dict[str, object]:
    """What a poll with nothing new says of the search itself (its row alone may change)."""
    return {
        "status": search.status,
        "cancel_requested": search.cancel_requested,
        "started_at": when(search.started_at),
        "finished_at": when(search.finished_at),
    }


def search_list(listings: list[SearchListing]) -> list[dict[str, object]]:
    """Summaries of a list of searches."""
    return [search_summary(x.search, x.totals, x.best) for x in listings]


def trial_brief(trial) -> dict[str, object]:
    """Enough of a trial to name it in a summary."""
    return {
        "id": trial.id,
        "index": trial.index,
        "lr": trial.lr,
        "best_val_acc": number(trial.best_val_acc),
        "best_epoch": trial.best_epoch,
    }


def trials_url() -> str:
    """The trial pages' URL without the id: a list of thousands of trials builds each one's
    from it (url_for took half of a 50,000-trial search's JSON)."""
    return url_for("pages.trial", trial_id=0).removesuffix("0")


def trial_row(trial: Trial, base_url: str | None = None) -> dict[str, object]:
    """One trial as the ranking table and status list show it (base_url: see trials_url)."""
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
        # host:pid of the process that ran its last attempt (not yet: the claiming runner's)
        "worker": None if "/runner" in (trial.worker or "/runner") else trial.worker,
        "epochs_done": trial.epochs_done,
        "cancel_requested": trial.cancel_requested,
        "best_val_acc": number(trial.best_val_acc),
        "best_epoch": trial.best_epoch,
        "final_val_acc": number(trial.final_val_acc),
        "final_acc_train": number(trial.final_acc_train),
        "final_val_loss": number(trial.final_val_loss),
        "min_val_loss": number(trial.min_val_loss),
        "gap": number(ranking.gap(trial)),
        "rank_key": [number(part) for part in ranking.rank_key(trial)],
        "seconds": number(trial.seconds),
        "started_at": when(trial.started_at),
        "finished_at": when(trial.finished_at),
        "updated_at": when(trial.updated_at),
        "url": f"{base_url or trials_url()}{trial.id}",
    }


def search_detail(state: dict[str, object], trials: list[Trial]) -> dict[str, object]:
    """A search's state (see search_state) with every trial."""
    base = trials_url()
    return {**state, "trials": [trial_row(t, base) for t in trials]}


def range_test(result, new_search_url: str | None) -> dict[str, object]:
    """A range test's points, column by column, its suggestion, and the new-search form
    filled in for the suggested range (see search.range_suggestion)."""
    points, suggestion = result.points, result.suggestion
    return {
        "points": {
            name: [number(getattr(p, name)) for p in points]
            for name in ("step", "lr", "loss", "smoothed")
        }
        | {"median": [number(v) for v in result.curve]},
        "suggestion": None if suggestion is None else vars(suggestion),
        "new_search_url": new_search_url,
    }


def search_state(
    search: Search, totals: TrialTotals, best, healthiest_id: int | None, error_summary=None
) -> dict[str, object]:
    """The search's summary, the ranking's two answers and its window, an ETA."""
    return {
        "search": search_summary(search, totals, best),
        "best_trial_id": best.id if best else None,
        "healthiest_trial_id": healthiest_id,
        "healthy_within": ranking.HEALTHY_WITHIN,
        **(errors(error_summary) if error_summary else {"errors": [], "more_errors": 0}),
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


def epochs(found: EpochColumns, after: int) -> dict[str, object]:
    """Epochs column by column (see reads.epochs_after), and where to go on from."""
    return {
        "after": after,
        "last_id": found.last_id,
        "complete": found.complete,
        "epochs": {name: _finite(column) for name, column in found.columns.items()},
    }


def epoch_rows(rows: Iterable[Epoch]) -> list[dict[str, object]]:
    """Epochs one by one, as a trial's detail lists them."""
    exact = ("id", "trial_id", "epoch", "attempt")
    return [
        {f: getattr(e, f) if f in exact else number(getattr(e, f)) for f in EPOCH_FIELDS}
        for e in rows
    ]


def _finite(column: list) -> list:
    """The column, with any NaN or infinity (never written, but JSON must stay strict) as null."""
    if all(map(math.isfinite, column)):
        return column
    return [number(v) for v in column]


def poll_window(since: datetime | None) -> datetime:
    """Where a poll's trial changes start: a little before the client's last look."""
    margin = timedelta(seconds=2)
    return datetime.min if since is None else max(since, datetime.min + margin) - margin


BUILT_IN_DATASETS = {
    "digits": {"source": "scikit-learn's bundled copy", "samples": 1797, "features": 64},
    "synthetic": {"source": "generated by seed; synthetic:NxDxK for another size",
                  "samples": 7000, "features": 64},
}  # fmt: skip
IMAGE_SHAPES = {784: (28, 28), 64: (8, 8)}  # features -> pixels, for sample images


def dataset_row(record, searches: list[tuple]) -> dict[str, object]:
    """A stored data set as the Datasets page and the API show it."""
    given = bool(record.val_samples)
    return {
        "name": record.name,
        "kind": record.kind,
        "source": record.source,
        "status": record.status,
        "error": record.error,
        "progress": record.progress,
        "progress_note": record.progress_note,
        "samples": record.samples,
        "features": record.features,
        "classes": record.classes,
        "val_samples": record.val_samples,
        "split": "given" if given else "80/20 per class, by the search's seed",
        "class_counts": record.class_counts,
        "labels": record.labels,
        "sha256": record.sha256,
        "disk_bytes": record.disk_bytes,
        "created_at": when(record.created_at),
        "image_shape": IMAGE_SHAPES.get(record.features or 0),
        "searches": [_search_link(s) for s in searches],
        "built_in": False,
        "url": url_for("datasets.api_detail", name=record.name),
    }


def dataset_list(records, used: dict[str, list[tuple]], fetchable) -> list[dict[str, object]]:
    """Built-in data sets, then the stored ones, then the fetchable ones not fetched yet."""
    rows = [
        {**_built_in(name, about), "searches": [_search_link(s) for s in used.get(name, [])]}
        for name, about in BUILT_IN_DATASETS.items()
    ]
    rows += [dataset_row(r, used.get(r.name, [])) for r in records]
    have = {r.name for r in records}
    rows += [_not_fetched(name) for name in fetchable if name not in have]
    return rows


def _built_in(name: str, about: dict) -> dict[str, object]:
    return {
        "name": name, "kind": "built in", "status": "ready", "error": None, "progress": 1.0,
        "progress_note": "", "classes": 10, "val_samples": None,
        "split": "80/20 per class, by the search's seed", "class_counts": None, "labels": None,
        "sha256": None, "disk_bytes": None, "created_at": None,
        "image_shape": IMAGE_SHAPES.get(about["features"]) if name == "digits" else None,
        "built_in": True, "url": url_for("datasets.api_detail", name=name), **about,
    }  # fmt: skip


def _not_fetched(name: str) -> dict[str, object]:
    return {
        "name": name, "kind": name, "source": "not downloaded yet", "status": "not downloaded",
        "error": None, "progress": 0.0, "progress_note": "", "samples": None,
        "features": 784, "classes": 10, "val_samples": None, "split": "given",
        "class_counts": None, "labels": None, "sha256": None, "disk_bytes": None,
        "created_at": None, "image_shape": None, "searches": [], "built_in": False,
        "url": url_for("datasets.api_detail", name=name),
    }  # fmt: skip


def _search_link(search: tuple) -> dict[str, object]:
    search_id, name, status = search
    url = url_for("pages.search", search_id=search_id)
    return {"id": search_id, "name": name, "status": status, "url": url}
