"""What a worker process does: train one trial, writing each epoch as it ends.

Everything here runs in a child process and receives plain values only; the process
builds its own engine after it started, and never shares one with its parent.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import select
import signal
import socket
import struct
import threading
import time
from functools import cache
from multiprocessing.connection import Connection
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lrsearch import artifacts
from lrsearch.models import CANCELLED, COMPLETED, DIVERGED, Trial
from lrsearch.search import plots
from lrsearch.search.store import (
    begin_attempt,
    finish_trial,
    process_engine,
    retry_transaction,
    write_epoch,
)
from lrsearch.training import EpochMetrics, load_dataset, train

log = logging.getLogger(__name__)
_blas_limit = None  # keeps threadpoolctl's limit alive for the life of the process

# How long a worker may run before the kernel switches to another ready one, when there
# are more workers than cores: each switch costs the incoming worker its caches (several
# MB of weights, gradients and Adam moments). 20 ms made 4 workers on 2 cores as quick as 2
# (the default 0.75-3 ms cost them 10 %); see benchmarks/pool_scaling.py.
TIME_SLICE_NS = 20_000_000
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def serve(connection: Connection, runner_pid: int) -> None:
    """A worker process's life (runner.ProcessSlots): set up, then run each call that comes
    down the pipe, one at a time, and send back (True, its result) or (False, its error)."""
    init_worker(runner_pid)
    warm_up()
    while True:
        try:
            message = connection.recv_bytes()
        except EOFError:  # the runner closed its end
            return
        try:
            fn, args = pickle.loads(message)  # e.g. a function this process cannot import
            reply = (True, fn(*args))
        except BaseException as exc:  # the runner records it (a trial's crash)
            reply = (False, exc)
        try:
            connection.send(reply)
        except Exception as exc:  # a result or error that cannot be pickled
            error = f"{type(reply[1]).__name__}: {reply[1]} (not sent back: {exc})"
            connection.send((False, RuntimeError(error)))


def init_worker(runner_pid: int) -> None:
    """Per-process set-up: one BLAS thread, batch scheduling, and end with the runner.

    Ctrl-C in a terminal reaches the whole process group; the runner answers it and stops
    the workers, which ignore it (else an idle one prints a KeyboardInterrupt traceback).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    batch_scheduling()
    threading.Thread(
        target=_exit_with, args=(runner_pid,), name="runner-watch", daemon=True
    ).start()
    limit_blas()


def limit_blas() -> None:
    """One BLAS thread in this process, and in any forked from it (the fork server calls it).

    Inherited, the limit costs a new worker nothing; set, it cost each one 5 ms (threadpoolctl
    looks through every loaded library).
    """
    global _blas_limit
    if _blas_limit is None:
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


def batch_scheduling(slice_ns: int = TIME_SLICE_NS) -> bool:
    """Run this process as a CPU-bound batch job: SCHED_BATCH, with a long time slice.

    SCHED_BATCH tells the kernel that the process is CPU-bound and not interactive; the
    slice (Linux 6.12 and later read sched_runtime as the fair scheduler's slice) keeps
    workers from trading the cores every few milliseconds when there are more of them than
    cores. The web server's latency under load did not change measurably either way
    (benchmarks/load.py); a runner started under `nice` keeps its nice value.
    Returns whether the kernel took both; where it refuses, SCHED_BATCH alone is set, and
    where that fails too, nothing changes. Kernels before 6.12 take the call but no slice.
    """
    number = _SYS_SCHED_SETATTR.get(os.uname().machine)
    if number is not None:
        try:
            nice = os.getpriority(os.PRIO_PROCESS, 0)
            # struct sched_attr (SCHED_ATTR_SIZE_VER1): size, policy, flags, nice,
            # priority, runtime, deadline, period, util_min, util_max
            attr = struct.pack("IIQiIQQQII", 56, os.SCHED_BATCH, 0, nice, 0, slice_ns, 0, 0, 0, 0)
            call = ctypes.CDLL(None, use_errno=True).syscall
            if call(ctypes.c_long(number), ctypes.c_long(0), attr, ctypes.c_long(0)) == 0:
                return True
        except (OSError, AttributeError):
            pass
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError):
        pass
    return False


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
    """Import what a trial will need (plotting included) while the process is idle.

    Workers forked from the fork server (see forkserver_start.PRELOAD) have all of it already.
    """
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


@cache
def worker_engine(database_url: str) -> Engine:
    """This process's own engine, built after the process started."""
    return process_engine(database_url)


def worker_name() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LogFolderError(RuntimeError):
    """The trial's log folder cannot be written (disk full, permissions)."""


def run_trial(trial_id: int, attempt: int, database_url: str, data_dir: str) -> str:
    """Train one trial in this worker process; return its final status.

    One connection serves the trial, all on its DBAPI cursor: its start, each epoch's write
    and its end (see store.write_epoch).
    """
    with worker_engine(database_url).connect() as connection:
        trial, search = begin_attempt(connection, trial_id, attempt, worker_name())
        folder = artifacts.trial_folder(data_dir, search.id, trial.index, trial.lr)
        data = load_dataset(search.dataset, artifacts.datasets_root(data_dir), seed=search.seed)
        log_path = folder / artifacts.LOG_NAME
        log_file = _writing(folder, lambda: artifacts.start_log(folder, attempt))
        history: list[dict[str, float]] = []
        stop_reason: list[str] = []

        def on_epoch(metrics: EpochMetrics) -> bool:
            history.append(dict(vars(metrics)))  # asdict's deep copy: 60 µs an epoch
            reason = write_epoch(connection, trial_id, attempt, metrics, summarize(history))
            line = artifacts.log_line(
                metrics.epoch,
                metrics.epochs,
                metrics.loss,
                metrics.acc_train,
                metrics.val_loss,
                metrics.acc_val,
            )
            _writing(log_path, lambda: log_file.write(line + "\n"))
            if reason:
                stop_reason.append(reason)
            return bool(reason)

        cpu_started = time.process_time()
        try:
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
        finally:
            _writing(log_path, log_file.close)
        # CPU time, not wall time: with more workers than cores a trial takes longer, but
        # its plot is no smaller a share of the work.
        inline_plot = time.process_time() - cpu_started >= plots.INLINE_AFTER_SECONDS
        if history and inline_plot:
            plot = folder / artifacts.PLOT_NAME
            title = plots.plot_title(trial, search)
            _writing(plot, lambda: artifacts.draw_plot(plot, title, history))
        if stop_reason == ["lost"]:
            return "lost"
        finished = result.status == "completed" or len(history) == search.epochs
        status = DIVERGED if result.status == "diverged" else COMPLETED if finished else CANCELLED
        pending = bool(history) and not inline_plot
        finish_trial(connection, trial_id, attempt, status, result.message or None, pending)
    return status


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
