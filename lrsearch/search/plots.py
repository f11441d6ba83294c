"""Each trial's matplotlib plot: drawn by the worker when the trial was long, else lazily.

A plot costs about 0.04-0.06 s of CPU; a digits trial trains in less. So a worker draws it
only after a trial whose training took many times that much CPU time, and anything that
needs a plot (the trial page, the archives, the CLI) draws a missing one from the database.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from lrsearch import artifacts
from lrsearch.models import TRIAL_FINAL, Epoch, Search, Trial
from lrsearch.search.sampler import format_lr

INLINE_AFTER_SECONDS = 3.0  # trials that trained for more CPU seconds draw their plot at once


def plot_title(trial: Trial, search: Search) -> str:
    """The plot's title: the rate, the dataset and the trial's index."""
    return f"lr={format_lr(trial.lr)}  ({search.dataset}, trial {trial.index})"


def ensure_plot(session: Session, trial: Trial, data_dir: str) -> Path | None:
    """The trial's plot, drawn from its stored epochs if missing; None while it runs."""
    folder = artifacts.trial_folder(data_dir, trial.search_id, trial.index, trial.lr)
    path = folder / artifacts.PLOT_NAME
    if path.is_file():
        return path
    if trial.status not in TRIAL_FINAL or not trial.epochs_done:
        return None
    epochs = session.execute(
        select(Epoch)
        .where(Epoch.trial_id == trial.id, Epoch.attempt == trial.attempt)
        .order_by(Epoch.epoch)
    ).scalars()
    history = [
        {f: getattr(e, f) for f in ("epoch", "loss", "acc_train", "val_loss", "acc_val")}
        for e in epochs
    ]
    if not history:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    artifacts.draw_plot(path, plot_title(trial, trial.search), history)
    return path
