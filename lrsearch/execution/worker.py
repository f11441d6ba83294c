"""What a worker process does: train one trial, writing each epoch as it ends.

Everything here runs in a child process and receives plain values only; the process
builds its own engine after it started, and never shares one with its parent.
"""

from __future__ import annotations

import io
import os
import socket
import time
from functools import cache
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lrsearch import artifacts
from lrsearch.datasets import cache as datasets
from lrsearch.execution import plots
from lrsearch.execution.trial_writes import TrialWrites
from lrsearch.models import CANCELLED, COMPLETED, DIVERGED, PRUNED, Trial
from lrsearch.scheduling import rung_at
from lrsearch.settings import RANGE_TEST
from lrsearch.store import (
    begin_attempt,
    finish_trial,
    process_engine,
    retry_transaction,
)
from lrsearch.store.checkpoints import carry_epochs, latest_checkpoint
from lrsearch.store.range_points import record_range_test
from lrsearch.training import EpochMetrics, Trainer, range_test, train
from lrsearch.training.checkpoint import TrainerState


@cache
def worker_engine(database_url: str) -> Engine:
    """This process's own engine, built after the process started."""
    return process_engine(database_url)


def worker_name() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


# What rung_at needs of a search's settings.
SCHEDULE = ("scheduler", "epochs", "grace_period", "reduction_factor", "brackets", "metric")


class LogFolderError(RuntimeError):
    """The trial's log folder cannot be written (disk full, permissions)."""


def run_trial(
    trial_id: int,
    attempt: int,
    database_url: str,
    data_dir: str,
    claimed_by: str | None = None,
    files: bool = True,
    checkpoint_seconds: float = 0.0,
) -> str:
    """Train one trial in this worker process; return its final status.

    One connection serves the trial, all on its DBAPI cursor: its start, each epoch's write
    and its end (see store.attempts). claimed_by: the runner that claimed it (see
    begin_attempt). files=False: the trial's log.txt and plot are left to the runner's side
    (a Dask worker shares no disk with it); they are written from the database.
    A checkpoint is saved after an epoch when `checkpoint_seconds` have passed since the
    last (0: every epoch), and after the last; an attempt after another resumes from the
    trial's latest, its earlier epochs carried over to it.
    """
    with worker_engine(database_url).connect() as connection:
        trial, search = begin_attempt(connection, trial_id, attempt, worker_name(), claimed_by)
        spec = search.spec()
        folder = artifacts.trial_folder(data_dir, search.id, trial.index, trial.lr)
        data = datasets.load(spec.dataset, data_dir, seed=spec.seed)
        if spec.kind == RANGE_TEST:
            return _run_range_test(connection, trial, spec, data, folder if files else None)
        log_path = folder / artifacts.LOG_NAME
        if files:
            log_file = _writing(folder, lambda: artifacts.start_log(folder, attempt))
        else:
            log_file = io.StringIO()  # the runner's side writes log.txt from the database
        history: list[dict[str, float]] = []
        stop_reason: list[str] = []
        schedule = {name: getattr(spec, name) for name in SCHEDULE}
        resume = _resumed(connection, trial_id, attempt, spec.epochs, history)
        # the carried epochs begin the new attempt's log too
        log_file.writelines(artifacts.history_lines(history, spec.epochs))
        last_saved = [time.monotonic()]

        def written(m: EpochMetrics) -> None:
            line = artifacts.log_line(m.epoch, m.epochs, m.loss, m.acc_train, m.val_loss, m.acc_val)
            _writing(log_path, lambda: log_file.write(line + "\n"))

        writes = TrialWrites(connection, trial_id, attempt, written)

        def on_state(trainer: Trainer, epoch: int) -> None:
            now = time.monotonic()
            last = epoch == spec.epochs
            if last or now - last_saved[0] >= checkpoint_seconds:
                # the last: weights only, kept for the model (a completed trial never resumes)
                state = lambda: trainer.state(epoch).to_bytes(weights_only=last)  # noqa: E731
                if writes.checkpoint(epoch, state, last):
                    last_saved[0] = now

        def on_epoch(metrics: EpochMetrics) -> bool:
            history.append(dict(vars(metrics)))  # not asdict: its deep copy is slower
            rung = rung_at(metrics.epoch, trial.index, **schedule)
            reason = writes.epoch(metrics, summarize(history), (search.id, rung) if rung else None)
            if reason:
                stop_reason.append(reason)
            return bool(reason)

        cpu_started = time.process_time()
        try:
            result = train(data, spec.training(), trial.lr, seed=trial.seed, on_epoch=on_epoch,
                           resume=resume, on_state=on_state)  # fmt: skip
            if reason := writes.finish():  # the epochs held through an outage
                stop_reason.append(reason)
        finally:
            writes.close()
            _writing(log_path, log_file.close)
        del history[len(history) - writes.dropped :]  # see TrialWrites.dropped
        # CPU time, not wall time: with more workers than cores a trial takes longer, but
        # its plot is no smaller a share of the work.
        inline_plot = files and time.process_time() - cpu_started >= plots.INLINE_AFTER_SECONDS
        if history and inline_plot:
            plot = folder / artifacts.PLOT_NAME
            title = plots.plot_title(trial, spec.dataset)
            _writing(plot, lambda: artifacts.draw_plot(plot, title, history))
        if stop_reason == ["lost"]:
            return "lost"
        finished = result.status == "completed" or len(history) == spec.epochs
        status = DIVERGED if result.status == "diverged" else COMPLETED if finished else CANCELLED
        if stop_reason == [PRUNED]:
            status = PRUNED
        pending = files and bool(history) and not inline_plot  # else drawn when first needed
        finish_trial(connection, trial_id, attempt, status, result.message or None, pending)
    return status


def _resumed(
    connection, trial_id: int, attempt: int, epochs: int, history: list
) -> TrainerState | None:
    """The trainer state an attempt resumes from (None: from scratch), its earlier epochs
    carried over to this attempt and put in `history`."""
    stored = latest_checkpoint(connection, trial_id)
    if stored is None or stored.attempt == attempt or not 0 < stored.epoch < epochs:
        return None
    carried = carry_epochs(connection, trial_id, stored.attempt, attempt, stored.epoch)
    if [e["epoch"] for e in carried] != list(range(1, stored.epoch + 1)):
        return None  # an epoch is missing: start over
    history.extend({**e, "epochs": epochs} for e in carried)
    return TrainerState.from_bytes(stored.data)


def _run_range_test(connection, trial: Trial, spec, data, folder: Path | None) -> str:
    """A range test's one network, its points, log and plot (where `folder` is given: else
    written from the database when needed); the trial's final status."""
    started = time.perf_counter()
    points = range_test.range_test(
        data, spec.training(), spec.lr_min, spec.lr_max, spec.iterations, seed=trial.seed
    )
    seconds = time.perf_counter() - started
    if not record_range_test(connection, trial.id, trial.attempt, points, seconds):
        return "lost"
    if folder is not None:
        log_path, plot = folder / artifacts.LOG_NAME, folder / artifacts.PLOT_NAME
        _writing(log_path, lambda: artifacts.write_range_log(folder, trial.attempt, points))
        title = plots.range_plot_title(spec.dataset, len(points))
        suggestion = range_test.suggest_range(points)
        _writing(plot, lambda: artifacts.draw_range_plot(plot, title, points, suggestion))
    finish_trial(connection, trial.id, trial.attempt, COMPLETED)
    return COMPLETED


def draw_plots(trial_ids: list[int], database_url: str, data_dir: str) -> int:
    """Draw the plots that short trials left for later; return how many are there now."""

    def draw(session: Session, trial_id: int) -> bool:
        trial = session.get(Trial, trial_id)
        return bool(trial and plots.ensure_plot(session, trial, data_dir))

    with Session(worker_engine(database_url)) as session:
        return sum(retry_transaction(session, lambda s, t=t: draw(s, t)) for t in trial_ids)


def _writing(path: Path, write):
    """Run a write to the log folder; a failure names the path and the reason."""
    try:
        return write()
    except OSError as exc:
        raise LogFolderError(f"cannot write {path}: {exc.strerror or exc}") from exc


def summarize(history: list[dict[str, float]]) -> dict[str, float | int | None]:
    """The trial's best and final metrics after the epochs so far."""
    best = max(history, key=lambda e: e["acc_val"])
    last = history[-1]
    return {
        "best_val_acc": best["acc_val"],
        "best_epoch": best["epoch"],
        "min_val_loss": min(e["val_loss"] for e in history),
        "final_loss": last["loss"],
        "final_acc_train": last["acc_train"],
        "final_val_loss": last["val_loss"],
        "final_val_acc": last["acc_val"],
        "seconds": sum(e["seconds"] for e in history),
    }
