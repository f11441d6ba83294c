"""Each trial's plot: drawn by its worker after a long trial, else when first needed.

The pages, the archives and the CLI draw a missing one from the stored epochs; the
runner's idle workers draw the ones short trials left for later (worker.draw_plots).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from lrsearch import artifacts
from lrsearch.models import TRIAL_FINAL, Trial
from lrsearch.settings import RANGE_TEST, format_lr
from lrsearch.store import reads
from lrsearch.store.range_points import range_points
from lrsearch.training.range_test import suggest_range

# A plot costs more CPU time than a short trial takes to train: a worker draws it
# only after a trial that trained for this many CPU seconds, and anything that needs a plot
# (the trial page, the archives, the CLI) draws a missing one from the database.
INLINE_AFTER_SECONDS = 3.0


def plot_title(trial: Trial, dataset: str) -> str:
    """The plot's title: the rate, the data set and the trial's index."""
    return f"lr={format_lr(trial.lr)}  ({dataset}, trial {trial.index})"


def range_plot_title(dataset: str, batches: int) -> str:
    """A range test's plot title."""
    return f"LR range test ({dataset}, {batches} batches)"


def ensure_plot(session: Session, trial: Trial, data_dir: str) -> Path | None:
    """The trial's plot, drawn from its stored epochs (a range test's points) if missing;
    None while it runs."""
    folder = artifacts.trial_folder(data_dir, trial.search_id, trial.index, trial.lr)
    path = folder / artifacts.PLOT_NAME
    if path.is_file():
        return path
    if trial.status not in TRIAL_FINAL or not trial.epochs_done:
        return None
    if trial.search.kind == RANGE_TEST:
        points = range_points(session, trial.id)
        if not points:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        title = range_plot_title(trial.search.dataset, len(points))
        artifacts.draw_range_plot(path, title, points, suggest_range(points))
        return path
    history = reads.attempt_history(session, trial)
    if not history:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    artifacts.draw_plot(path, plot_title(trial, trial.search.dataset), history)
    return path


def ensure_log(session: Session, trial: Trial, data_dir: str) -> Path | None:
    """An ended trial's log.txt, written from its stored epochs (a range test's points) if
    missing: a trial run on a Dask worker left it to this side. None if it has none yet."""
    folder = artifacts.trial_folder(data_dir, trial.search_id, trial.index, trial.lr)
    path = folder / artifacts.LOG_NAME
    if path.is_file() or trial.status not in TRIAL_FINAL or not trial.attempt:
        return path if path.is_file() else None
    if trial.search.kind == RANGE_TEST:
        points = range_points(session, trial.id)
        if not points:
            return None
        artifacts.write_range_log(folder, trial.attempt, points)
        return path
    history = reads.attempt_history(session, trial)
    if not history:
        return None
    artifacts.write_log(folder, trial.attempt, trial.search.epochs, history)
    return path
