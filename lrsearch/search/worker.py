"""What a worker process does: train one trial, writing each epoch as it ends.

Everything here runs in a child process and receives plain values only; the process
builds its own engine after it started, and never shares one with its parent.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import threading
import time
from dataclasses import asdict
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from lrsearch import artifacts
from lrsearch.models import CANCELLED, COMPLETED, DIVERGED, Trial
from lrsearch.search import plots
from lrsearch.search.store import begin_attempt, finish_trial, write_epoch
from lrsearch.training import EpochMetrics, load_dataset, train

log = logging.getLogger(__name__)
_blas_limit = None  # keeps threadpoolctl's limit alive for the life of the process


def init_worker(runner_pid: int) -> None:
    """Per-process set-up: one BLAS thread, and end with the runner, however it ends."""
    global _blas_limit
    die_with_parent()
    threading.Thread(
        target=_exit_with, args=(runner_pid,), name="runner-watch", daemon=True
    ).start()
    from threadpoolctl import threadpool_limits

    _blas_limit = threadpool_limits(1)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies, so it is no orphan."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the watch below still ends us
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _exit_with(pid: int) -> None:
    """End this process when process `pid` ends.

    A fork server's children are not the runner's: when the runner is killed they would
    live on (the fork server waits for them), so each watches the runner itself.
    """
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):  # no pidfd (old kernel): poll
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.5)
        os._exit(1)
    select.select([handle], [], [])  # readable once the process has exited
    os._exit(1)


def warm_up() -> None:
    """Import what a trial will need (plotting included) while the process is idle."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


@cache
def worker_engine(database_url: str) -> Engine:
    """This process's own engine, built after the process started."""
    return create_engine(database_url, pool_pre_ping=True)


def worker_name() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LogFolderError(RuntimeError):
    """The trial's log folder cannot be written (disk full, permissions)."""


def run_trial(trial_id: int, attempt: int, database_url: str, data_dir: str) -> str:
    """Train one trial in this worker process; return its final status."""
    with Session(worker_engine(database_url)) as session:
        trial, search = begin_attempt(session, trial_id, attempt, worker_name())
        folder = artifacts.trial_folder(data_dir, search.id, trial.index, trial.lr)
        log_path = _writing(folder, lambda: artifacts.start_log(folder, attempt))
        data = load_dataset(search.dataset, artifacts.datasets_root(data_dir), seed=search.seed)
        history: list[dict[str, float]] = []
        stop_reason: list[str] = []

        def on_epoch(metrics: EpochMetrics) -> bool:
            history.append(asdict(metrics))
            reason = write_epoch(session, trial_id, attempt, metrics, summarize(history))
            line = artifacts.log_line(
                metrics.epoch,
                metrics.epochs,
                metrics.loss,
                metrics.acc_train,
                metrics.val_loss,
                metrics.acc_val,
            )
            _writing(log_path, lambda: artifacts.append_log(log_path, line))
            if reason:
                stop_reason.append(reason)
            return bool(reason)

        result = train(
            data,
            search.layers,
            trial.lr,
            epochs=search.epochs,
            batch_size=search.batch_size,
            beta1=search.beta1,
            beta2=search.beta2,
            eps=search.eps,
            seed=trial.seed,
            on_epoch=on_epoch,
        )
        inline_plot = sum(e["seconds"] for e in history) >= plots.INLINE_AFTER_SECONDS
        if history and inline_plot:
            plot = folder / artifacts.PLOT_NAME
            title = plots.plot_title(trial, search)
            _writing(plot, lambda: artifacts.draw_plot(plot, title, history))
        if stop_reason == ["lost"]:
            return "lost"
        finished = result.status == "completed" or len(history) == search.epochs
        status = DIVERGED if result.status == "diverged" else COMPLETED if finished else CANCELLED
        pending = bool(history) and not inline_plot
        finish_trial(session, trial_id, attempt, status, result.message or None, pending)
    return status


def draw_plots(trial_ids: list[int], database_url: str, data_dir: str) -> int:
    """Draw the plots that short trials left for later; return how many are there now."""
    ready = 0
    with Session(worker_engine(database_url)) as session:
        for trial_id in trial_ids:
            trial = session.get(Trial, trial_id)
            ready += bool(trial and plots.ensure_plot(session, trial, data_dir))
    return ready


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
